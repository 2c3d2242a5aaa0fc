"""One operation of the document: its parameters, request body, responses and security,
from the route (its path parameters) and the ``Operation`` declared with it."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from api.openapi.components import (
    ERRORS,
    PATH_PARAMS,
    PATH_SCHEMAS,
    RATE_LIMIT_HEADERS,
    TAG_OF,
    TAGS,
)
from api.openapi.schemas import REF, Schemas
from api.operation import JSON, PROMETHEUS, SSE, Auth, Operation, Shape


def operation_ids(served: dict[tuple[str, str], Route]) -> dict[tuple[str, str], str]:
    """The handler's name, prefixed with its module's where two handlers share a name."""
    names = [route.name for route in served.values()]
    return {key: (route.name if names.count(route.name) == 1 else
                  f"{route.endpoint.__module__.rsplit('.', 1)[1]}_{route.name}")
            for key, route in served.items()}


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    segment = parts[1] if parts[0] == "v1" else parts[0]
    tag = TAG_OF.get(segment, segment)
    if tag not in TAGS:
        raise ValueError(f"{path}: no tag {tag!r} in TAGS")
    return tag


def operation(route: Route, op: Operation, op_id: str, schemas: Schemas) -> dict[str, Any]:
    """The operation object of ``route`` (one method), described by ``op``."""
    out: dict[str, Any] = {"tags": [_tag(route.path)], "summary": op.summary, "operationId": op_id}
    description = _auth_text(op.auth) + (" " + op.description if op.description else "")
    if description.strip():
        out["description"] = description.strip()
    parameters = [
        {"name": name, "in": "path", "required": True, "description": PATH_PARAMS[name],
         "schema": PATH_SCHEMAS.get(name, {"type": "string"})} for name in route.param_convertors]
    if op.auth not in (None, "admin", "runtime"):
        parameters.append({"$ref": "#/components/parameters/SpoolTenant"})
    if op.idempotent:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if op.media == SSE:
        parameters.append({"$ref": "#/components/parameters/LastEventId"})
    parameters += [_empty_allowed(param.spec()) for param in op.query]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": not op.body_optional,
                              "content": {op.body_media: {"schema": schemas.of(op.body)}}}
    responses = {str(op.status): _success(op, op.response, _REASONS[op.status], schemas)}
    for status, shape, text in op.also:
        responses[str(status)] = _success(op, shape, text, schemas, position=False)
    for status in _errors(op, route):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/"
                                                   f"{ERRORS[status][0]}"})
    if op.links:
        responses[str(op.status)]["links"] = {
            name: {"operationId": target, "parameters": parameters}
            for name, (target, parameters) in op.links.items()}
    out["responses"] = dict(sorted(responses.items()))
    out["security"] = _security(op.auth) + ([{"streamToken": []}] if op.media == SSE else [])
    return out


def _empty_allowed(param: dict[str, Any]) -> dict[str, Any]:
    """A query parameter sent empty is as if it were not sent (api/middleware.py): its
    pattern or format admits the empty string too."""
    schema = param["schema"]
    if schema.get("type") != "string":
        return param
    if "pattern" in schema:
        inner = schema["pattern"].removeprefix("^").removesuffix("$")
        schema = {**schema, "pattern": f"^(?:{inner})?$"}
    if "format" in schema:
        schema = {key: value for key, value in schema.items() if key != "format"}
        schema["anyOf"] = [{"format": param["schema"]["format"]}, {"maxLength": 0}]
    return {**param, "schema": schema}


_REASONS = {200: "OK", 201: "Created", 202: "Accepted: appended to the log"}

# In OpenAPI 3.1 the schema of a `text/event-stream` response describes each frame, as its
# fields (the first frame is `retry` alone); `data` is an `Event` as JSON.
_SSE_FRAME: dict[str, Any] = {
    "type": "object",
    "description": "One frame: `id`, `event` and `data` (an `Event` as JSON), or `retry` alone.",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": JSON,
                 "contentSchema": {"$ref": REF.format(name="Event")}},
        "retry": {"type": "integer", "minimum": 0},
    },
}


def _auth_text(auth: Auth) -> str:
    if auth in ("viewer", "member", "owner"):
        return (f"Role: `{auth}` or above (or the admin token with `Spool-Tenant`).")
    return {"admin": "The admin token only.", "runtime": "One of the agent's runtime tokens.",
            None: "No authentication."}[auth]


def _security(auth: Auth) -> list[dict[str, list[str]]]:
    if auth is None:
        return []
    if auth == "admin":
        return [{"adminToken": []}]
    if auth == "runtime":
        return [{"agentToken": []}]
    return [{"apiKey": []}, {"adminToken": []}]


def _success(op: Operation, shape: Shape, text: str, schemas: Schemas,
             position: bool = True) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if position and op.position is not None:
        headers["Spool-Position"] = {"$ref": "#/components/headers/Spool-Position"}
        if op.position == "if_changed":
            text += " (`Spool-Position` only when something changed)"
    if op.rate_limited:
        headers.update(RATE_LIMIT_HEADERS)
    if op.media == SSE:
        schema: dict[str, Any] = _SSE_FRAME
    elif op.media == PROMETHEUS:
        schema = {"type": "string", "description": "The Prometheus text exposition format."}
    elif shape is None:
        schema = {"type": "object"}
    else:
        schema = schemas.of(shape)
    return {"description": text, "headers": headers, "content": {op.media: {"schema": schema}}}


def _errors(op: Operation, route: Route) -> list[int]:
    """The error statuses of an operation: 500 and 415 (a body that is not JSON) always; with
    authentication 400, 401, 403 and 503 (Postgres); with a body 413, 422; with path parameters
    or Spool-Tenant 404; with an Idempotency-Key 409; and the op's own."""
    statuses = {500, 415, *op.errors}
    if op.auth is not None:
        statuses |= {400, 401, 403, 503}
    if op.body is not None:
        statuses |= {400, 413, 415, 422}
    if route.param_convertors or op.auth in ("viewer", "member", "owner"):  # Spool-Tenant
        statuses.add(404)
    if op.idempotent:
        statuses.add(409)
    if op.rate_limited:
        statuses.add(429)
    return sorted(statuses)
