"""/healthz (the process is up), /readyz (Postgres and Redis reachable), /metrics (Prometheus)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.io import json_response


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """503 without Postgres (nothing can be served). Without Redis the process still serves
    everything, streams included (from Postgres, slower): 200, status "degraded"."""
    checks = await request.app.state.engine.readiness()
    if checks["postgres"] != "ok":
        return json_response({"status": "unavailable", "checks": checks}, 503)
    status = "ok" if checks["redis"] == "ok" else "degraded"
    return json_response({"status": status, "checks": checks})


async def metrics(request: Request) -> Response:
    registry = request.app.state.engine.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
