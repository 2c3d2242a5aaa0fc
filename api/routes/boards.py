"""/v1/boards: create, list, get, update, delete, and the board snapshot (from the task view)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import event_meta, tenant_of
from api.io import (
    idempotency_key,
    json_response,
    position_header,
    query_int,
    query_limit,
    read_json,
)
from api.query import query_cursor
from engine.domain.boards import BoardIn, BoardPatch, Deleted


async def create_board(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    body = await read_json(request, BoardIn)
    board, event = await request.app.state.engine.boards.create(
        tenant_id, body, meta=event_meta(request, principal),
        idempotency_key=idempotency_key(request),
    )
    return json_response(board, 201, position_header(event.position))


async def list_boards(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.boards.list_boards(
        tenant_id, after=query_cursor(request, "brd"), limit=query_limit(request),
        min_position=query_int(request, "min_position", None),
    )
    return json_response(page)


async def get_board(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    board = await request.app.state.engine.boards.get(tenant_id, request.path_params["board_id"])
    return json_response(board)


async def update_board(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    patch = await read_json(request, BoardPatch)
    board, event = await request.app.state.engine.boards.update(
        tenant_id, request.path_params["board_id"], patch,
        meta=event_meta(request, principal), idempotency_key=idempotency_key(request),
    )
    return json_response(board, 200, position_header(event.position) if event else None)


async def delete_board(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    board_id = request.path_params["board_id"]
    event = await request.app.state.engine.boards.delete(
        tenant_id, board_id, meta=event_meta(request, principal))
    return json_response(Deleted(board_id), 200, position_header(event.position))


async def board_snapshot(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    snapshot = await request.app.state.engine.tasks.snapshot(
        tenant_id, request.path_params["board_id"], limit=query_int(request, "limit", 100,
                                                                    minimum=1),
        min_position=query_int(request, "min_position", None),
    )
    return json_response(snapshot)


routes = [
    Route("/v1/boards", create_board, methods=["POST"]),
    Route("/v1/boards", list_boards, methods=["GET"]),
    Route("/v1/boards/{board_id}", get_board, methods=["GET"]),
    Route("/v1/boards/{board_id}", update_board, methods=["PATCH"]),
    Route("/v1/boards/{board_id}", delete_board, methods=["DELETE"]),
    Route("/v1/boards/{board_id}/snapshot", board_snapshot, methods=["GET"]),
]
