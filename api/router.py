"""``IndexedRouter``: Starlette's router, with the routes looked up by their path's first two
segments before they are matched.

Starlette matches a request against every route in order, one regex each; with sixty routes a
submission was matched against thirty of them before its own (about 4% of a loaded server's
CPU). Here a request is matched only against the routes whose path starts with the same two
literal segments (``/v1/sessions``), in the table's order, and a route whose first segments hold
a parameter, or a request no route of its bucket matches, takes Starlette's own full scan. So
every answer is the one the full scan gives: the same route, the same 405 (a route of the same
path with another method is in the same bucket), the same trailing-slash redirect and 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Router
from starlette.types import Receive, Scope, Send


def bucket_key(path: str) -> str:
    """``/v1/sessions/ses_1/messages`` -> ``/v1/sessions``; ``/healthz`` -> ``/healthz``."""
    return "/".join(path.split("/", 3)[:3])


class IndexedRouter(Router):
    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes=routes, **kwargs)
        self._buckets: dict[str, list[BaseRoute]] = {}
        for route in self.routes:
            path = getattr(route, "path", None)
            key = bucket_key(path) if isinstance(path, str) else None
            if key is None or "{" in key:
                self._buckets.clear()  # such a route could match in any bucket: no index
                return
            self._buckets.setdefault(key, []).append(route)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        bucket = self._buckets.get(bucket_key(scope["path"])) if scope["type"] == "http" else None
        if bucket is not None and await self._dispatch(bucket, scope, receive, send):
            return
        await super().app(scope, receive, send)

    async def _dispatch(self, bucket: list[BaseRoute], scope: Scope, receive: Receive,
                        send: Send) -> bool:
        """Hand the request to the first route of ``bucket`` that matches it fully, else to the
        first that matches its path only (a 405); False when none does."""
        scope.setdefault("router", self)
        partial: tuple[BaseRoute, Scope] | None = None
        for route in bucket:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                partial = route, child_scope
                break
            if match is Match.PARTIAL and partial is None:
                partial = route, child_scope
        if partial is None:
            return False
        route, child_scope = partial
        scope["route"] = route
        scope.update(child_scope)
        await route.handle(scope, receive, send)
        return True
