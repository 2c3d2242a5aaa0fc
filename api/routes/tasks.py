"""/v1/tasks: create, list (filters ``status``, ``assignee_id``, ``board_id``; from the task
view), get, update, delete, and comments."""

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
from api.query import query_cursor, query_id, query_text
from engine.domain.boards import Deleted
from engine.domain.tasks import CommentIn, TaskIn, TaskPatch


async def create_task(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    body = await read_json(request, TaskIn)
    task, event = await request.app.state.engine.tasks.create(
        tenant_id, body, meta=event_meta(request, principal),
        idempotency_key=idempotency_key(request),
    )
    return json_response(task, 201, position_header(event.position))


async def list_tasks(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.tasks.list_tasks(
        tenant_id, status=query_text(request, "status"),
        assignee_id=query_id(request, "assignee_id", "agt"),
        board_id=query_id(request, "board_id", "brd"), after=query_cursor(request, "tsk"),
        limit=query_limit(request),
        min_position=query_int(request, "min_position", None),
    )
    return json_response(page)


async def get_task(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    task = await request.app.state.engine.tasks.get(tenant_id, request.path_params["task_id"])
    return json_response(task)


async def update_task(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    patch = await read_json(request, TaskPatch)
    task, event = await request.app.state.engine.tasks.update(
        tenant_id, request.path_params["task_id"], patch,
        meta=event_meta(request, principal), idempotency_key=idempotency_key(request),
    )
    return json_response(task, 200, position_header(event.position) if event else None)


async def delete_task(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    task_id = request.path_params["task_id"]
    event = await request.app.state.engine.tasks.delete(
        tenant_id, task_id, meta=event_meta(request, principal))
    return json_response(Deleted(task_id), 200, position_header(event.position))


async def add_comment(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    body = await read_json(request, CommentIn)
    comment, event = await request.app.state.engine.tasks.comment(
        tenant_id, request.path_params["task_id"], body, meta=event_meta(request, principal),
        idempotency_key=idempotency_key(request),
    )
    return json_response(comment, 201, position_header(event.position))


async def list_comments(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.tasks.comments(
        tenant_id, request.path_params["task_id"], after=query_cursor(request, "cmt"),
        limit=query_limit(request),
    )
    return json_response(page)


routes = [
    Route("/v1/tasks", create_task, methods=["POST"]),
    Route("/v1/tasks", list_tasks, methods=["GET"]),
    Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/v1/tasks/{task_id}", update_task, methods=["PATCH"]),
    Route("/v1/tasks/{task_id}", delete_task, methods=["DELETE"]),
    Route("/v1/tasks/{task_id}/comments", add_comment, methods=["POST"]),
    Route("/v1/tasks/{task_id}/comments", list_comments, methods=["GET"]),
]
