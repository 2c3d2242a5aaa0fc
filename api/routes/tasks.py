"""/v1/tasks: create, list (filters ``status``, ``assignee_id``, ``board_id``; from the task
view), get, update, delete, and comments."""

from __future__ import annotations

from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of
from api.handlers import created, created_under, deleted, fetched, listed, updated
from api.io import json_response, query_limit
from api.operation import Operation, id_q, links_to, page, q, route, view_page
from api.query import query_cursor, query_id, query_text
from api.state import engine_of
from engine.domain.boards import Deleted
from engine.domain.tasks import Comment, CommentIn, Task, TaskIn, TaskPatch
from engine.events import TaskStatus
from engine.pages import Page


async def create_task(request: Request) -> Response:
    return await created(request, TaskIn, engine_of(request).tasks.create)


async def list_tasks(request: Request) -> Response:
    return await listed(request, "tsk", engine_of(request).tasks.list_tasks, _task_filters)


def _task_filters(request: Request) -> dict[str, Any]:
    return {"status": query_text(request, "status"),
            "assignee_id": query_id(request, "assignee_id", "agt"),
            "board_id": query_id(request, "board_id", "brd")}


async def get_task(request: Request) -> Response:
    return await fetched(request, "task_id", engine_of(request).tasks.get)


async def update_task(request: Request) -> Response:
    return await updated(request, "task_id", TaskPatch, engine_of(request).tasks.update)


async def delete_task(request: Request) -> Response:
    return await deleted(request, "task_id", engine_of(request).tasks.delete)


async def add_comment(request: Request) -> Response:
    return await created_under(request, "task_id", CommentIn, engine_of(request).tasks.comment)


async def list_comments(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await engine_of(request).tasks.comments(
        tenant_id, request.path_params["task_id"], after=query_cursor(request, "cmt"),
        limit=query_limit(request),
    )
    return json_response(page)


routes = [
    route("POST", "/v1/tasks", create_task, Operation(
        "Create a task", Task, 201, TaskIn, auth="member", idempotent=True, position="always",
        description="Unknown board, assignee or dependency: 404 naming the "
        "field; a dependency cycle: 400. A task is `blocked` while a dependency is not done.",
        links=links_to("task_id", GetTask="get_task", UpdateTask="update_task",
                       DeleteTask="delete_task", AddComment="add_comment",
                       ListComments="list_comments"))),
    route("GET", "/v1/tasks", list_tasks, Operation(
        "List tasks", Page[Task],
        query=(q("status", "Only tasks in this status.", enum=list(get_args(TaskStatus))),
               id_q("assignee_id", "agt", "Only tasks assigned to this agent."),
               id_q("board_id", "brd", "Only this board's tasks."), *view_page("tsk")))),
    route("GET", "/v1/tasks/{task_id}", get_task, Operation("Get a task", Task)),
    route("PATCH", "/v1/tasks/{task_id}", update_task, Operation(
        "Update a task", Task, body=TaskPatch, auth="member", idempotent=True,
        position="if_changed", description="Each field given replaces the current one.")),
    route("DELETE", "/v1/tasks/{task_id}", delete_task, Operation(
        "Delete a task", Deleted, auth="member", position="always")),
    route("POST", "/v1/tasks/{task_id}/comments", add_comment, Operation(
        "Comment on a task", Comment, 201, CommentIn, auth="member", idempotent=True,
        position="always")),
    route("GET", "/v1/tasks/{task_id}/comments", list_comments, Operation(
        "List a task's comments", Page[Comment], query=page("cmt"))),
]
