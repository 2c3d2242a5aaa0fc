"""Responses against the OpenAPI document: each must answer an operation of the document with
a status it declares, its content type and headers, and a body that fits the declared schema
(with every object closed, so a field the schema lacks fails too)."""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from api.app import ROUTES
from api.openapi import build


def _strict(components: dict[str, Any]) -> dict[str, Any]:
    """The components with every object closed (additionalProperties: false): a field a
    response has and its schema lacks fails too. The published document stays open."""
    strict = copy.deepcopy(components)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(strict["schemas"])
    return strict


class Checker:
    """Checks each response against the operation it answers: a declared status, content type
    and headers, and a body that fits the schema."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = _strict(spec["components"])
        self.checked: set[tuple[str, str, int]] = set()

    def __call__(self, template: str, response: httpx.Response) -> Any:
        method = response.request.method
        op = self.spec["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in op["responses"], (
            f"{method} {template} answered {status}, not declared: {response.text}")
        declared = op["responses"][status]
        if "$ref" in declared:
            declared = self.spec["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
        media = response.headers["content-type"]
        assert media in declared["content"] or media.split(";")[0] in declared["content"]
        for header in declared.get("headers", {}):
            conditional = header == "Retry-After" or header.startswith("X-RateLimit-")
            if not conditional and "only when" not in declared["description"]:
                assert header in response.headers, f"{method} {template}: no {header}"
        self.checked.add((method, template, response.status_code))
        if media != "application/json":
            return response.text
        schema = declared["content"][media]["schema"]
        validator = Draft202012Validator({**schema, "components": self.components},
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        body = response.json()
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(body)]
        assert not errors, f"{method} {template} {status}: {errors[:5]}"
        return body



@cache
def _checker() -> Checker:
    return Checker(build(ROUTES))


def check_all(responses: list[httpx.Response]) -> None:
    """Check each JSON response to a route of the document (a test's own routes, 405s and
    streams aside)."""
    checker = _checker()
    for response in responses:
        template = _template(response.request.url.path, response.request.method.lower())
        media = response.headers.get("content-type", "")
        if template is not None and not media.startswith("text/event-stream"):
            checker(template, response)


def _template(path: str, method: str) -> str | None:
    for template, pattern in _patterns():
        if pattern.fullmatch(path) and method in _checker().spec["paths"][template]:
            return template
    return None


@cache
def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    """Path templates as patterns, those with fewer parameters first (`/v1/events/stream`
    before a `/v1/events/{id}`)."""
    templates = sorted(_checker().spec["paths"], key=lambda t: t.count("{"))
    return [(t, re.compile(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(t)))) for t in templates]
