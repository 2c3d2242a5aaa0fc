"""Task boards: create, list, get, update, delete, and the snapshot of their tasks."""

from __future__ import annotations

from typing import Any

from spool._async._paging import AsyncPager
from spool._async._resources._base import AsyncResource, fields
from spool._models import Board, BoardPage, BoardSnapshot, Deleted
from spool._operations import operation


class AsyncBoards(AsyncResource):
    @operation("create_board")
    async def create(self, *, name: str, description: str | None = None,
                     idempotency_key: str | None = None) -> Board:
        body = fields({"name": name, "description": description})
        return await self._sender.model(self._sender.call(
            "create_board", json=body, idempotency_key=idempotency_key), Board)

    @operation("list_boards")
    def list(self, *, limit: int | None = None,
             min_position: int | None = None) -> AsyncPager[Board]:
        return self._sender.pager(self._sender.call(
            "list_boards", params={"limit": limit, "min_position": min_position}), BoardPage)

    @operation("get_board")
    async def get(self, board_id: str) -> Board:
        return await self._sender.model(self._sender.call("get_board", board_id), Board)

    @operation("update_board")
    async def update(self, board_id: str, *, idempotency_key: str | None = None,
                     **changes: Any) -> Board:
        """Only the fields given change (``name``, ``description``)."""
        return await self._sender.model(self._sender.call(
            "update_board", board_id, json=changes, idempotency_key=idempotency_key), Board)

    @operation("delete_board")
    async def delete(self, board_id: str) -> Deleted:
        return await self._sender.model(self._sender.call("delete_board", board_id), Deleted)

    @operation("board_snapshot")
    async def snapshot(self, board_id: str, *, limit: int | None = None,
                       min_position: int | None = None) -> BoardSnapshot:
        """The board's tasks by status, blocked ones and counts, from the task view."""
        return await self._sender.model(self._sender.call(
            "board_snapshot", board_id, params={"limit": limit, "min_position": min_position}),
            BoardSnapshot)
