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
    checks = await request.app.state.engine.readiness()
    ready = all(state == "ok" for state in checks.values())
    return json_response({"status": "ok" if ready else "unavailable", "checks": checks},
                         200 if ready else 503)


async def metrics(request: Request) -> Response:
    registry = request.app.state.engine.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
