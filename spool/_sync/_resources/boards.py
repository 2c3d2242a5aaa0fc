# Generated from spool/_async/_resources/boards.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Task boards: create, list, get, update, delete, and the snapshot of their tasks."""

from __future__ import annotations

from typing import Any

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource, fields
from spool._models import Board, BoardPage, BoardSnapshot, Deleted
from spool._operations import operation


class Boards(Resource):
    @operation("create_board")
    def create(self, *, name: str, description: str | None = None,
               idempotency_key: str | None = None) -> Board:
        body = fields({"name": name, "description": description})
        return self._sender.model(self._sender.call(
            "create_board", json=body, idempotency_key=idempotency_key), Board)

    @operation("list_boards")
    def list(self, *, limit: int | None = None,
             min_position: int | None = None) -> Pager[Board]:
        return self._sender.pager(self._sender.call(
            "list_boards", params={"limit": limit, "min_position": min_position}), BoardPage)

    @operation("get_board")
    def get(self, board_id: str) -> Board:
        return self._sender.model(self._sender.call("get_board", board_id), Board)

    @operation("update_board")
    def update(self, board_id: str, *, idempotency_key: str | None = None,
               **changes: Any) -> Board:
        """Only the fields given change (``name``, ``description``)."""
        return self._sender.model(self._sender.call(
            "update_board", board_id, json=changes, idempotency_key=idempotency_key), Board)

    @operation("delete_board")
    def delete(self, board_id: str) -> Deleted:
        return self._sender.model(self._sender.call("delete_board", board_id), Deleted)

    @operation("board_snapshot")
    def snapshot(self, board_id: str, *, limit: int | None = None,
                 min_position: int | None = None) -> BoardSnapshot:
        """The board's tasks by status, blocked ones and counts, from the task view."""
        return self._sender.model(self._sender.call(
            "board_snapshot", board_id, params={"limit": limit, "min_position": min_position}),
            BoardSnapshot)
