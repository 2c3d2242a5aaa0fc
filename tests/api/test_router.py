"""IndexedRouter answers every request exactly as Starlette's full scan of the same table does:
the same route, 405, trailing-slash redirect or 404, for any path built from the table's own
segments (hypothesis) and for every route's own path."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, Router

from api.app import ROUTES
from api.router import IndexedRouter

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _recording_table() -> list[Route]:
    """The app's route table, each route answering with its own path and method list."""
    table = []
    for route in ROUTES:
        assert isinstance(route, Route)

        async def endpoint(request: Request, path: str = route.path) -> Response:
            return PlainTextResponse(f"{path} {sorted(request.path_params.items())}")

        table.append(Route(route.path, endpoint, methods=sorted(route.methods or ())))
    return table


TABLE = _recording_table()
PLAIN, INDEXED = Router(TABLE), IndexedRouter(TABLE)
SEGMENTS = sorted({part for route in TABLE for part in route.path.split("/")
                   if part and "{" not in part} | {"x1", "ses_1"})


async def answer(router: Router, method: str, path: str,
                 root_path: str = "") -> tuple[int, bytes, dict[str, str]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": root_path + path,
             "raw_path": (root_path + path).encode(), "root_path": root_path,
             "query_string": b"", "headers": [(b"host", b"test")],
             "scheme": "http", "server": ("test", 80)}
    await router(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    headers = {k.decode(): v.decode() for k, v in start["headers"]
               if k in (b"allow", b"location")}
    return start["status"], body, headers


def test_each_route_is_a_candidate_for_its_own_paths_among_few() -> None:
    for route in TABLE:
        path = route.path.replace("{", "").replace("}", "")
        candidates = INDEXED._candidates(path)
        assert route in candidates and len(candidates) < len(TABLE) / 3, path


async def test_every_route_and_method_is_answered_as_the_full_scan_does() -> None:
    for route in TABLE:
        path = route.path.replace("{", "").replace("}", "")
        for method in METHODS:
            for variant in (path, path + "/", path + "/x1"):
                assert await answer(INDEXED, method, variant) == await answer(
                    PLAIN, method, variant), (method, variant)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(METHODS),
       parts=st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=5),
       slash=st.booleans())
async def test_any_path_of_the_tables_segments_is_answered_as_the_full_scan_does(
        method: str, parts: list[str], slash: bool) -> None:
    path = "/" + "/".join(parts) + ("/" if slash and parts else "")
    assert await answer(INDEXED, method, path) == await answer(PLAIN, method, path)


def _recorder(path: str, methods: list[str]) -> Route:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(f"{path} {sorted(request.path_params.items())}")

    return Route(path, endpoint, methods=methods)


# A table with what the app's has not (yet): parameters in the first and second segments,
# catch-all paths, one path under several methods, literal and templated paths that overlap.
MIXED = [_recorder(path, methods) for path, methods in [
    ("/a/b", ["GET"]), ("/a/{x}", ["GET", "POST"]), ("/a/b", ["POST"]), ("/{y}/b", ["PUT"]),
    ("/a/b/{z}", ["GET"]), ("/c", ["GET"]), ("/c/{rest:path}", ["GET"]),
    ("/{any:path}", ["DELETE"]),
]] + [Mount("/m", routes=[_recorder("/x", ["GET"])]), _recorder("/m/x", ["POST"])]
MIXED_PLAIN, MIXED_INDEXED = Router(MIXED), IndexedRouter(MIXED)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(METHODS),
       parts=st.lists(st.sampled_from(["a", "b", "c", "m", "x", ""]), min_size=0, max_size=4),
       slash=st.booleans(), root_path=st.sampled_from(["", "/r"]))
async def test_parameters_in_any_segment_are_answered_as_the_full_scan_does(
        method: str, parts: list[str], slash: bool, root_path: str) -> None:
    path = "/" + "/".join(parts) + ("/" if slash and parts else "")
    assert await answer(MIXED_INDEXED, method, path, root_path) == await answer(
        MIXED_PLAIN, method, path, root_path)


async def test_routes_added_after_the_index_is_built_are_candidates() -> None:
    router = IndexedRouter([_recorder("/a/b", ["GET"])])
    router.routes.append(_recorder("/a/b", ["POST"]))
    assert (await answer(router, "POST", "/a/b"))[0] == 200


async def test_every_mixed_route_and_method_is_answered_as_the_full_scan_does() -> None:
    for route in MIXED:
        path = route.path.replace("{", "").replace("}", "").replace(":path", "")
        for method in METHODS:
            for variant in (path, path + "/", path + "/x"):
                assert await answer(MIXED_INDEXED, method, variant) == await answer(
                    MIXED_PLAIN, method, variant), (method, variant)
