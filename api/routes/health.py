"""/healthz (the process is up), /readyz (Postgres and Redis reachable), /metrics (Prometheus)."""

from __future__ import annotations

from typing import Literal

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from api.io import json_response
from api.operation import PROMETHEUS, Operation, route
from api.state import engine_of

ReadyStatus = Literal["ok", "degraded", "unavailable"]


class Health(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    """``checks``: ``postgres`` and ``redis``, each ``ok`` or what is wrong."""

    status: ReadyStatus
    checks: dict[str, str]


async def healthz(request: Request) -> Response:
    return json_response(Health("ok"))


async def readyz(request: Request) -> Response:
    """503 without Postgres (nothing can be served). Without Redis the process still serves
    everything, streams included (from Postgres, slower): 200, status "degraded"."""
    checks = await engine_of(request).readiness()
    if checks["postgres"] != "ok":
        return json_response(Readiness("unavailable", checks), 503)
    status: ReadyStatus = "ok" if checks["redis"] == "ok" else "degraded"
    return json_response(Readiness(status, checks))


async def metrics(request: Request) -> Response:
    registry = engine_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    route("GET", "/healthz", healthz, Operation("The process is up", Health, auth=None)),
    route("GET", "/readyz", readyz, Operation(
        "Postgres and Redis are reachable", Readiness, auth=None,
        description="`degraded` without Redis: everything is still served, streams from "
        "Postgres (slower).",
        also=((503, Readiness, "Postgres is unreachable: nothing can be served."),))),
    route("GET", "/metrics", metrics, Operation("Prometheus metrics", None, auth=None,
                                               media=PROMETHEUS)),
]
