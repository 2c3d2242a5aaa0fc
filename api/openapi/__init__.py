"""The OpenAPI 3.1 document (``GET /v1/openapi.json``), built from a route table: each route
is an ``OperationRoute`` carrying the ``Operation`` declared beside it in api/routes
(api/operation.py), with the msgspec types it reads and returns. ``python -m api.openapi``
prints it; ``make openapi`` writes it to ``docs/openapi.json``, and a test fails when that
file and the routes drift apart.

The modules: ``paths`` (one operation), ``schemas`` (the types as components), ``components``
(tags, errors, headers, security). This package reads route tables; it imports none."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

from starlette.routing import BaseRoute, Route

from api.errors import ErrorEnvelope
from api.openapi.components import (
    DESCRIPTION,
    ERRORS,
    HEADERS_IN,
    HEADERS_OUT,
    RESPONSE_HEADERS,
    SECURITY,
    STREAM_TOKEN,
    TAGS,
    error_response,
)
from api.openapi.paths import operation, operation_ids
from api.openapi.schemas import Schemas, shapes
from api.operation import Operation, OperationRoute, PageRoute
from engine.events import AnyEventData, EventMeta

__all__ = ["RESPONSE_HEADERS", "build", "drift", "operations", "operations_of", "render"]


def operations_of(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], Route]:
    """Each (method, path) the route table serves (HEAD, which Starlette adds to GET, aside),
    but for the pages for browsers (``PageRoute``), which are not operations of the API."""
    found: dict[tuple[str, str], Route] = {}
    for route in routes:
        if isinstance(route, PageRoute):
            continue
        if not isinstance(route, Route):
            raise TypeError(f"{route!r}: only plain Routes can be described")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found[(method, route.path)] = route
    return found


def drift(routes: Iterable[BaseRoute]) -> list[str]:
    """The routes no ``Operation`` describes (declared with a plain ``Route``), as
    ``METHOD path``."""
    return sorted(f"{method} {path}" for (method, path), route in operations_of(routes).items()
                  if not isinstance(route, OperationRoute))


def operations(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], Operation]:
    """The operation of each (method, path) the route table serves and describes."""
    return {key: route.operation for key, route in operations_of(routes).items()
            if isinstance(route, OperationRoute)}


def build(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    missing = drift(routes)
    if missing:
        raise ValueError(f"routes without an Operation (api/operation.py): undescribed {missing}")
    served = operations_of(routes)
    ops = operations(routes)
    schemas = Schemas([*shapes(ops.values()), ErrorEnvelope, EventMeta, AnyEventData])
    paths: dict[str, dict[str, Any]] = {}
    op_ids = operation_ids(served)
    for (method, path), route in served.items():
        paths.setdefault(path, {})[method.lower()] = operation(
            route, ops[(method, path)], op_ids[(method, path)], schemas)
    components = schemas.components()
    return {
        "openapi": "3.1.0",
        "info": {"title": "agentspool", "version": _version(), "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": components["schemas"],
            "responses": {name: error_response(status, text, schemas)
                          for status, (name, text) in ERRORS.items()},
            "parameters": HEADERS_IN,
            "headers": HEADERS_OUT,
            "securitySchemes": {
                **{name: {"type": "http", "scheme": "bearer", "description": text}
                   for name, text in SECURITY.items()},
                "streamToken": STREAM_TOKEN},
        },
    }


def render(document: dict[str, Any]) -> bytes:
    """The document as committed in docs/openapi.json: 2-space indent, a trailing newline."""
    return (json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode()


def _version() -> str:
    try:
        return metadata.version("agentspool")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0.0.0"
