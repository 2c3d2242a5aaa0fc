"""Every operation of the API the SDK calls: its method, path and whether it takes an
``Idempotency-Key``, by the document's ``operationId`` (tests/spool/test_operations.py checks
this table and the clients' methods against docs/openapi.json)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

# POSTs that change nothing the second time (what they do is already done): safe to resend.
_IDEMPOTENT = frozenset(
    {"suspend_tenant", "resume_tenant", "archive_agent", "archive", "interrupt"})


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    method: str
    path: str
    idempotency_key: bool = False  # the server accepts Idempotency-Key: the SDK always sends one

    @property
    def resendable(self) -> bool:
        """Whether a request that may have reached the server can be sent again: it is
        idempotent by its method, by its key, or by what it does."""
        return (self.method in ("GET", "PUT", "DELETE") or self.idempotency_key
                or self.operation_id in _IDEMPOTENT)


_TABLE = [
    Operation("healthz", "GET", "/healthz"),
    Operation("readyz", "GET", "/readyz"),
    Operation("metrics", "GET", "/metrics"),
    Operation("openapi_json", "GET", "/v1/openapi.json"),
    Operation("create_tenant", "POST", "/v1/tenants"),
    Operation("list_tenants", "GET", "/v1/tenants"),
    Operation("get_tenant", "GET", "/v1/tenants/{tenant_id}"),
    Operation("suspend_tenant", "POST", "/v1/tenants/{tenant_id}/suspend"),
    Operation("resume_tenant", "POST", "/v1/tenants/{tenant_id}/resume"),
    Operation("create_api_key", "POST", "/v1/api_keys"),
    Operation("list_api_keys", "GET", "/v1/api_keys"),
    Operation("revoke_api_key", "DELETE", "/v1/api_keys/{key_id}"),
    Operation("create_agent", "POST", "/v1/agents", idempotency_key=True),
    Operation("list_agents", "GET", "/v1/agents"),
    Operation("get_agent", "GET", "/v1/agents/{agent_id}"),
    Operation("update_agent", "PATCH", "/v1/agents/{agent_id}", idempotency_key=True),
    Operation("list_versions", "GET", "/v1/agents/{agent_id}/versions"),
    Operation("archive_agent", "POST", "/v1/agents/{agent_id}/archive"),
    Operation("create_token", "POST", "/v1/agents/{agent_id}/tokens"),
    Operation("list_tokens", "GET", "/v1/agents/{agent_id}/tokens"),
    Operation("revoke_token", "DELETE", "/v1/agents/{agent_id}/tokens/{token_id}"),
    Operation("heartbeat", "POST", "/v1/agents/{agent_id}/heartbeat"),
    Operation("create_session", "POST", "/v1/sessions", idempotency_key=True),
    Operation("list_sessions", "GET", "/v1/sessions"),
    Operation("get_session", "GET", "/v1/sessions/{session_id}"),
    Operation("get_state", "GET", "/v1/sessions/{session_id}/state"),
    Operation("submit_message", "POST", "/v1/sessions/{session_id}/messages", idempotency_key=True),
    Operation("interrupt", "POST", "/v1/sessions/{session_id}/interrupt"),
    Operation("archive", "POST", "/v1/sessions/{session_id}/archive"),
    Operation("list_queue", "GET", "/v1/sessions/{session_id}/queue"),
    Operation("remove_queued", "DELETE", "/v1/sessions/{session_id}/queue/{turn_id}"),
    Operation("submit_tool_results", "POST", "/v1/sessions/{session_id}/tool_results",
              idempotency_key=True),
    Operation("sessions_list_events", "GET", "/v1/sessions/{session_id}/events"),
    Operation("list_approvals", "GET", "/v1/approvals"),
    Operation("get_approval", "GET", "/v1/approvals/{approval_id}"),
    Operation("resolve_approval", "POST", "/v1/approvals/{approval_id}", idempotency_key=True),
    Operation("create_stream_token", "POST", "/v1/stream_tokens"),
    Operation("session_stream", "GET", "/v1/sessions/{session_id}/stream"),
    Operation("tenant_stream", "GET", "/v1/events/stream"),
    Operation("events_list_events", "GET", "/v1/events"),
    Operation("audit", "GET", "/v1/audit"),
    Operation("create_board", "POST", "/v1/boards", idempotency_key=True),
    Operation("list_boards", "GET", "/v1/boards"),
    Operation("get_board", "GET", "/v1/boards/{board_id}"),
    Operation("update_board", "PATCH", "/v1/boards/{board_id}", idempotency_key=True),
    Operation("delete_board", "DELETE", "/v1/boards/{board_id}"),
    Operation("board_snapshot", "GET", "/v1/boards/{board_id}/snapshot"),
    Operation("create_task", "POST", "/v1/tasks", idempotency_key=True),
    Operation("list_tasks", "GET", "/v1/tasks"),
    Operation("get_task", "GET", "/v1/tasks/{task_id}"),
    Operation("update_task", "PATCH", "/v1/tasks/{task_id}", idempotency_key=True),
    Operation("delete_task", "DELETE", "/v1/tasks/{task_id}"),
    Operation("add_comment", "POST", "/v1/tasks/{task_id}/comments", idempotency_key=True),
    Operation("list_comments", "GET", "/v1/tasks/{task_id}/comments"),
    Operation("list_budgets", "GET", "/v1/budgets"),
    Operation("set_budget", "PUT", "/v1/budgets/{scope}"),
    Operation("get_budget", "GET", "/v1/budgets/{scope}"),
    Operation("delete_budget", "DELETE", "/v1/budgets/{scope}"),
    Operation("usage", "GET", "/v1/usage"),
    Operation("export_session", "GET", "/v1/sessions/{session_id}/export"),
    Operation("export_tenant", "GET", "/v1/export"),
    Operation("import_sessions", "POST", "/v1/sessions/import"),
]
OPERATIONS: dict[str, Operation] = {op.operation_id: op for op in _TABLE}
# Served by the export/import branch, not yet in docs/openapi.json: the SDK calls them already.
PENDING = frozenset({"export_session", "export_tenant", "import_sessions"})


def operation(operation_id: str) -> Callable[[F], F]:
    """Marks a client method as the one for ``operation_id`` (what the drift test collects)."""
    if operation_id not in OPERATIONS:
        raise KeyError(operation_id)

    def mark(method: F) -> F:
        method.__spool_operation__ = operation_id  # type: ignore[attr-defined]
        return method

    return mark
