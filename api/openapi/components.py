"""The document's parts that are no operation: its description, tags, security schemes,
shared error responses, headers, and the descriptions of path parameters."""

from __future__ import annotations

from typing import Any

from api.errors import ErrorEnvelope
from api.openapi.schemas import Schemas
from api.operation import JSON, Param
from api.query import ULID

PATH_PARAMS = {
    "tenant_id": "A tenant id (`ten_...`).",
    "key_id": "An API key id (`key_...`).",
    "agent_id": "An agent id (`agt_...`).",
    "token_id": "An agent runtime token id (`atk_...`).",
    "session_id": "A session id (`ses_...`).",
    "turn_id": "A queued turn's id.",
    "approval_id": "An approval id.",
    "board_id": "A board id (`brd_...`).",
    "task_id": "A task id (`tsk_...`).",
    "scope": "`tenant`, `agent:<agent id>` or `session:<session id>`.",
}

# Path parameters whose form the code checks (400); any other id of the wrong form is a 404.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "scope": {"type": "string", "pattern": f"^(tenant|agent:agt_{ULID}|session:ses_{ULID})$"},
}

TAGS = {
    "health": "Liveness, readiness, metrics and this document (no authentication).",
    "tenants": "Tenants (the admin token only).",
    "api_keys": "API keys of a tenant (owners).",
    "agents": "Agents, their immutable versions, runtime tokens and heartbeats.",
    "sessions": "Sessions, turns, and their event logs and streams.",
    "approvals": "Tool calls waiting for a human.",
    "events": "The tenant's log, its live stream, and the audit trail.",
    "boards": "Boards and their snapshots.",
    "tasks": "Tasks, their dependencies and comments.",
    "budgets": "Budgets per tenant, agent and session, and usage.",
}
TAG_OF = {"healthz": "health", "readyz": "health", "metrics": "health",
           "openapi.json": "health", "audit": "events", "usage": "budgets",
           "stream_tokens": "events", "export": "sessions"}

ERRORS: dict[int, tuple[str, str]] = {  # status: (component name, description)
    400: ("BadRequest", "`invalid_request`: a bad query parameter or cursor, malformed JSON, or "
          "input the types cannot judge (a duplicate, a cycle); `details.field` names it. The "
          "admin token without `Spool-Tenant` is 400 too."),
    401: ("Unauthorized", "`unauthorized`: no credentials, or not valid ones."),
    402: ("BudgetExceeded", "`budget_exceeded`: a budget is spent (`details`: `scope`, "
          "`period`, `limit`, `spent`)."),
    403: ("Forbidden", "`forbidden`: the credentials lack the role, the tenant is suspended, "
          "or an agent runtime token is used for anything but its heartbeat."),
    404: ("NotFound", "`not_found`: no such resource in this tenant (or, for the admin token, "
          "no such tenant as `Spool-Tenant` names)."),
    409: ("Conflict", "`conflict`: the resource's state does not allow it, or the "
          "`Idempotency-Key` was used for another request."),
    413: ("PayloadTooLarge", "`invalid_request`: the body is over `SPOOL_MAX_BODY_BYTES`."),
    415: ("UnsupportedMediaType", "`invalid_request`: the body is not `application/json`."),
    422: ("UnprocessableEntity", "`invalid_request`: the body does not fit the schema "
          "(`details.field` names the field path, e.g. `content[0].text`)."),
    500: ("InternalError", "`internal_error`: the cause is in the server's log."),
    429: ("RateLimited", "`rate_limited`: the tenant submitted more messages this minute than "
          "`SPOOL_TURN_RATE_LIMIT` allows. Retry after `Retry-After` seconds."),
    503: ("Unavailable", "`unavailable`: Postgres is unreachable, or a view did not catch up "
          "with `min_position` in time. Retry after `Retry-After` seconds."),
}

SECURITY = {
    "apiKey": "An API key, `spk_...`: `Authorization: Bearer spk_...`. Roles: `owner`, "
              "`member`, `viewer`; each operation names the least role it needs.",
    "adminToken": "The admin token (`SPOOL_ADMIN_TOKEN`, or the one generated and printed on "
                  "the first start). On tenant routes it names the tenant in `Spool-Tenant`.",
    "agentToken": "An agent runtime token, `spt_...`: good only for its agent's heartbeat.",
}
# For SSE only, in the URL (EventSource cannot send headers).
STREAM_TOKEN = {"type": "apiKey", "in": "query", "name": "access_token",
                 "description": "A stream token, `sst_...`, from `POST /v1/stream_tokens`."}

DESCRIPTION = """\
agentspool: an event-sourced session engine for AI agents.

- Authenticate with `Authorization: Bearer <token>`; each operation says which tokens it takes.
- Every error is `{"error": {"type", "message", "details"}}` (`ErrorEnvelope`); bad input is \
named by its field path in `details.field`.
- Lists take `?limit=` (default 50, max 500) and `?after=`, and answer \
`{"data": [...], "has_more": bool, "next_cursor": str|null}`.
- Writes answer with the log position they reached in `Spool-Position`; reads of views accept \
`?min_position=` with it, to read their own writes.
- Every response carries `X-Request-Id`.
- A query parameter sent empty (`?after=`) is as if it were not sent, on every operation.
"""


HEADERS_IN: dict[str, dict[str, Any]] = {
    "SpoolTenant": Param(
        "Spool-Tenant", "The tenant the admin token acts on (required with the admin token, "
        "ignored with an API key).", {"type": "string"}, "header").spec(),
    "IdempotencyKey": Param(
        "Idempotency-Key", "Makes a retry of this request return the first one's result "
        "without writing again.", {"type": "string", "minLength": 1, "maxLength": 255},
        "header").spec(),
    "LastEventId": Param(
        "Last-Event-ID", "Resume after this id (sent by `EventSource` when it reconnects; "
        "empty: as if not sent).",
        {"type": "string", "pattern": "^[0-9]*$", "maxLength": 20}, "header").spec(),
}
HEADERS_OUT: dict[str, dict[str, Any]] = {
    "X-Request-Id": {"description": "The request's id: an incoming safe `X-Request-Id` echoed, "
                     "else `req_<ULID>`.", "schema": {"type": "string"}},
    "Spool-Position": {"description": "The log position the write reached: pass it as "
                       "`?min_position=` to read it from a view.",
                       "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "Retry-After": {"description": "Seconds to wait before retrying.",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-RateLimit-Limit": {"description": "Messages the tenant may submit per minute (these "
                          "three only when a limit is set).",
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-RateLimit-Remaining": {"description": "Of them, left in this minute.",
                              "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-RateLimit-Reset": {"description": "Seconds until the minute starts over.",
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}},
}
# What a browser script may read of a cross-origin response (CORS Access-Control-Expose-Headers):
# every response header documented here, so a new one is exposed by being documented.
RESPONSE_HEADERS = tuple(HEADERS_OUT)
# On rate-limited operations (when a limit is set) and their 429s.
RATE_LIMIT_HEADERS = {name: {"$ref": f"#/components/headers/{name}"}
                       for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining",
                                    "X-RateLimit-Reset")}


def error_response(status: int, text: str, schemas: Schemas) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if status == 429:
        headers.update(RATE_LIMIT_HEADERS)
    return {"description": text, "headers": headers,
            "content": {JSON: {"schema": schemas.of(ErrorEnvelope)}}}
