"""What browsers load from the app itself (never a CDN): ``GET /static/{path}`` (the files of
api/static/: ``spool.js``, the vendored Swagger UI, the console's modules), ``GET /`` (the
console: api/static/console/, a client of the public API like any other) and ``GET /docs`` (the
OpenAPI document, rendered). Each has an ETag and is revalidated (``no-cache``); a
Content-Security-Policy lets a page load only from its own origin."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api import assets
from api.operation import PageRoute
from engine.errors import NotFound

# Only the origin's own files; images may be data: URIs (Swagger UI's icons). No inline script or
# style attribute: /docs runs its set-up from /static/docs.js.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


async def static_file(request: Request) -> Response:
    return _served(request, request.path_params["path"])


async def docs(request: Request) -> Response:
    return _served(request, "docs.html")


async def console(request: Request) -> Response:
    return _served(request, "console/index.html")


def _served(request: Request, path: str) -> Response:
    asset = assets.find(path)
    if asset is None:
        raise NotFound(f"no file {path!r} under /static")
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache",
               "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
    if assets.not_modified(asset, request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


routes = [
    PageRoute("/", console),
    PageRoute("/docs", docs),
    PageRoute("/static/{path:path}", static_file),
]
