"""``IndexedRouter``: Starlette's router, with the routes looked up by their path's first
segments before they are matched.

Starlette matches a request against every route in order, one regex each; with sixty routes a
submission was matched against thirty of them before its own (about 4% of a loaded server's
CPU). Here a request is matched only against the routes that could match it, in the table's
order: those whose first two segments are the request's (``/v1/sessions``), those whose first
segment is literal and equal to the request's but whose second holds a parameter
(``/static/{path:path}``), and those that start with a parameter or are not plain routes (a
``Mount``). The request's path is the one Starlette matches (``root_path`` taken off), and
routes added to the table later are indexed on the next request. A request none of them
matches takes Starlette's own full scan. So every answer is the one the full scan gives: the
same route, the same 405 (a route of the same path with another method is among the
candidates), the same trailing-slash redirect and 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette._utils import get_route_path  # the path Router matches (root_path taken off)
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send


def _segments(path: str) -> tuple[str, str | None]:
    """``/v1/sessions/ses_1`` -> (``v1``, ``sessions``); ``/healthz`` -> (``healthz``, None)."""
    parts = path.split("/", 3)
    return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else None)


class IndexedRouter(Router):
    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes=routes, **kwargs)
        self._index()

    def _index(self) -> None:
        """Group the table by first segments. A route that is not a plain ``Route`` (a
        ``Mount``, a ``Host``) could match below any path: it is a candidate everywhere."""
        by_two: dict[tuple[str, str | None], list[int]] = {}
        by_one: dict[str, list[int]] = {}
        anywhere: list[int] = []
        for index, route in enumerate(self.routes):
            first, second = _segments(route.path) if isinstance(route, Route) else ("{", None)
            if "{" in first:
                anywhere.append(index)
            elif second is not None and "{" in second:
                by_one.setdefault(first, []).append(index)
            else:
                by_two.setdefault((first, second), []).append(index)

        def candidates(*groups: list[int]) -> list[BaseRoute]:
            return [self.routes[i] for i in sorted({i for group in groups for i in group})]

        # Keyed only by the table's own segments: a request's path never adds an entry.
        self._by_two = {key: candidates(found, by_one.get(key[0], []), anywhere)
                        for key, found in by_two.items()}
        self._by_one = {first: candidates(found, anywhere) for first, found in by_one.items()}
        self._anywhere = candidates(anywhere)
        self._indexed = len(self.routes)

    def _candidates(self, path: str) -> list[BaseRoute]:
        if len(self.routes) != self._indexed:  # routes added since (add_route, append)
            self._index()
        first, second = _segments(path)
        found = self._by_two.get((first, second))
        if found is None:
            found = self._by_one.get(first, self._anywhere)
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and await self._dispatch(
                self._candidates(get_route_path(scope)), scope, receive, send):
            return
        await super().app(scope, receive, send)

    async def _dispatch(self, candidates: list[BaseRoute], scope: Scope, receive: Receive,
                        send: Send) -> bool:
        """Hand the request to the first candidate that matches it fully, else to the first
        that matches its path only (a 405); False when none does."""
        scope.setdefault("router", self)
        chosen: tuple[BaseRoute, Scope] | None = None
        for route in candidates:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                chosen = route, child_scope
                break
            if match is Match.PARTIAL and chosen is None:
                chosen = route, child_scope
        if chosen is None:
            return False
        route, child_scope = chosen
        scope["route"] = route
        scope.update(child_scope)
        await route.handle(scope, receive, send)
        return True
