"""The SDK cannot drift from the API: every operation of the committed docs/openapi.json has a
method on both clients, with the method, path and ``Idempotency-Key`` the document gives it;
the SDK's methods beyond the document are only those of operations not served yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import spool
from spool._operations import OPERATIONS, PENDING, operation

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def documented() -> dict[str, tuple[str, str, bool]]:
    """operationId: (method, path, whether it takes Idempotency-Key), from the document."""
    found = {}
    for path, methods in json.loads(DOCUMENT.read_text())["paths"].items():
        for method, spec in methods.items():
            idempotent = any(p.get("$ref", "").endswith("/IdempotencyKey")
                             for p in spec.get("parameters", []))
            found[spec["operationId"]] = (method.upper(), path, idempotent)
    return found


def methods_of(client: Any) -> dict[str, str]:
    """operationId: the dotted name of the client method marked for it, resources and their
    sub-resources (``agents.tokens``) included."""
    found: dict[str, str] = {}

    def walk(obj: Any, prefix: str) -> None:
        for name in dir(type(obj)):
            if name.startswith("_"):
                continue
            marked = getattr(getattr(type(obj), name), "__spool_operation__", None)
            if marked is not None:
                assert marked not in found, f"{marked}: {found[marked]} and {prefix}{name}"
                found[marked] = prefix + name
        for name, value in vars(obj).items():
            if not name.startswith("_") and type(value).__module__.startswith("spool."):
                walk(value, f"{prefix}{name}.")

    walk(client, "")
    return found


@pytest.mark.parametrize("cls", [spool.Client, spool.AsyncClient])
def test_every_documented_operation_has_a_method(cls: type[Any]) -> None:
    client = cls(base_url="http://spool.test", api_key="spk_x")
    methods = methods_of(client)
    missing = sorted(set(documented()) - set(methods))
    assert missing == [], f"operations without an SDK method: {missing}"
    assert set(methods) == set(OPERATIONS)
    beyond = set(methods) - set(documented())
    assert beyond <= PENDING, f"SDK methods for operations the document lacks: {beyond}"


def test_the_operation_table_matches_the_document() -> None:
    for operation_id, (method, path, idempotent) in documented().items():
        op = OPERATIONS[operation_id]
        assert (op.method, op.path, op.idempotency_key) == (method, path, idempotent), (
            operation_id)


def test_both_clients_have_the_same_methods() -> None:
    sync = methods_of(spool.Client(base_url="http://spool.test"))
    async_ = methods_of(spool.AsyncClient(base_url="http://spool.test"))
    assert sync == async_


def test_marking_an_unknown_operation_fails() -> None:
    with pytest.raises(KeyError):
        operation("no_such_operation")
