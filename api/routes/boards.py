"""/v1/boards: create, list, get, update, delete, and the board snapshot (from the task view)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of
from api.handlers import created, deleted, fetched, listed, updated
from api.io import (
    json_response,
    query_int,
    query_min_position,
)
from api.operation import MIN_POSITION, Operation, links_to, q, route, view_page
from api.state import engine_of
from engine.domain.boards import Board, BoardIn, BoardPatch, Deleted
from engine.domain.tasks import BoardSnapshot
from engine.pages import MAX_LIMIT, Page


async def create_board(request: Request) -> Response:
    return await created(request, BoardIn, engine_of(request).boards.create)


async def list_boards(request: Request) -> Response:
    return await listed(request, "brd", engine_of(request).boards.list_boards)


async def get_board(request: Request) -> Response:
    return await fetched(request, "board_id", engine_of(request).boards.get)


async def update_board(request: Request) -> Response:
    return await updated(request, "board_id", BoardPatch, engine_of(request).boards.update)


async def delete_board(request: Request) -> Response:
    return await deleted(request, "board_id", engine_of(request).boards.delete)


async def board_snapshot(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    snapshot = await engine_of(request).tasks.snapshot(
        tenant_id, request.path_params["board_id"], limit=query_int(request, "limit", 100,
                                                                    minimum=1),
        min_position=query_min_position(request),
    )
    return json_response(snapshot)


routes = [
    route("POST", "/v1/boards", create_board, Operation(
        "Create a board", Board, 201, BoardIn, auth="member", idempotent=True,
        position="always",
        links=links_to("board_id", GetBoard="get_board", UpdateBoard="update_board",
                       DeleteBoard="delete_board", Snapshot="board_snapshot"))),
    route("GET", "/v1/boards", list_boards, Operation(
        "List boards", Page[Board], query=view_page("brd"))),
    route("GET", "/v1/boards/{board_id}", get_board, Operation("Get a board", Board)),
    route("PATCH", "/v1/boards/{board_id}", update_board, Operation(
        "Update a board", Board, body=BoardPatch, auth="member", idempotent=True,
        position="if_changed")),
    route("DELETE", "/v1/boards/{board_id}", delete_board, Operation(
        "Delete a board and its tasks", Deleted, auth="member", position="always")),
    route("GET", "/v1/boards/{board_id}/snapshot", board_snapshot, Operation(
        "The board's tasks by status, with counts and what blocks them", BoardSnapshot,
        query=(q("limit", "At most this many tasks per status.", "integer", minimum=1,
                 maximum=MAX_LIMIT, default=100), MIN_POSITION))),
]
