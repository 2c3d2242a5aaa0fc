# Generated from spool/_async/_resources/tasks.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Tasks: create, list, get, update, delete; ``tasks.comments``: add and list."""

from __future__ import annotations

from typing import Any

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource
from spool._sync._sender import Sender
from spool._models import Comment, CommentPage, Deleted, Task, TaskPage
from spool._operations import operation


class Comments(Resource):
    @operation("add_comment")
    def create(self, task_id: str, *, body: str,
               idempotency_key: str | None = None) -> Comment:
        return self._sender.model(self._sender.call(
            "add_comment", task_id, json={"body": body}, idempotency_key=idempotency_key),
            Comment)

    @operation("list_comments")
    def list(self, task_id: str, *, limit: int | None = None) -> Pager[Comment]:
        return self._sender.pager(self._sender.call(
            "list_comments", task_id, params={"limit": limit}), CommentPage)


class Tasks(Resource):
    def __init__(self, sender: Sender) -> None:
        super().__init__(sender)
        self.comments = Comments(sender)

    @operation("create_task")
    def create(self, *, board_id: str, title: str, idempotency_key: str | None = None,
               **fields: Any) -> Task:
        """``fields``: ``description``, ``status``, ``priority``, ``assignee_id``, ``due_at``,
        ``dependencies`` (docs/openapi.json's ``TaskIn``)."""
        body = {"board_id": board_id, "title": title, **fields}
        return self._sender.model(self._sender.call(
            "create_task", json=body, idempotency_key=idempotency_key), Task)

    @operation("list_tasks")
    def list(self, *, status: str | None = None, assignee_id: str | None = None,
             board_id: str | None = None, limit: int | None = None,
             min_position: int | None = None) -> Pager[Task]:
        params = {"status": status, "assignee_id": assignee_id, "board_id": board_id,
                  "limit": limit, "min_position": min_position}
        return self._sender.pager(self._sender.call("list_tasks", params=params), TaskPage)

    @operation("get_task")
    def get(self, task_id: str) -> Task:
        return self._sender.model(self._sender.call("get_task", task_id), Task)

    @operation("update_task")
    def update(self, task_id: str, *, idempotency_key: str | None = None,
               **changes: Any) -> Task:
        """Only the fields given change."""
        return self._sender.model(self._sender.call(
            "update_task", task_id, json=changes, idempotency_key=idempotency_key), Task)

    @operation("delete_task")
    def delete(self, task_id: str) -> Deleted:
        return self._sender.model(self._sender.call("delete_task", task_id), Deleted)
