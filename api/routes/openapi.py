"""``GET /v1/openapi.json``: the OpenAPI document of the app that serves it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.openapi import build, render
from api.operation import JSON, Operation, route


async def openapi_json(request: Request) -> Response:
    """The document of the app that serves it, built once per app."""
    body: bytes | None = getattr(request.app.state, "openapi", None)
    if body is None:
        body = request.app.state.openapi = render(build(request.app.routes))
    return Response(body, media_type=JSON)


routes = [route("GET", "/v1/openapi.json", openapi_json,
                Operation("This document (OpenAPI 3.1)", None, auth=None))]
