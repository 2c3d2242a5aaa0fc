"""The msgspec types' JSON Schemas as the document's components."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

import msgspec
import msgspec.inspect as mi

from api.errors import STATUS
from api.operation import Operation, Shape
from engine.errors import SpoolError
from engine.events import AnyEventData

REF = "#/components/schemas/{name}"


def clean_descriptions(node: Any) -> Any:
    """Every ``description`` dedented here: msgspec versions pass docstrings on indented or not."""
    if isinstance(node, dict):
        return {key: inspect.cleandoc(value) if key == "description" and isinstance(value, str)
                else clean_descriptions(value) for key, value in node.items()}
    if isinstance(node, list):
        return [clean_descriptions(value) for value in node]
    return node


class Schemas:
    """The msgspec types' JSON Schemas as components (``Page[Agent]`` becomes ``AgentPage``)."""

    def __init__(self, types: list[Any]) -> None:
        self._types = types
        found, self._components = msgspec.json.schema_components(types, ref_template=REF)
        self._renamed = {name: _page_name(name) for name in self._components}
        if len(set(self._renamed.values())) != len(self._renamed):
            raise ValueError("two schemas have one name once renamed")
        self._schemas: dict[str, dict[str, Any]] = {
            _key(t): _rename(s, self._renamed) for t, s in zip(types, found, strict=True)}

    def of(self, shape: Shape) -> dict[str, Any]:
        if isinstance(shape, tuple):
            return {"anyOf": [self.of(one) for one in shape]}
        return self._schemas[_key(shape)]

    def components(self) -> dict[str, dict[str, Any]]:
        schemas = {self._renamed[name]: _rename(schema, self._renamed)
                   for name, schema in self._components.items()}
        # Raw JSON fields, typed: an event's data is one of the event data types, by `type`.
        event = schemas["Event"]["properties"]
        event["data"] = {"$ref": REF.format(name="EventData"),
                         "description": "The event's data; its shape depends on `type`."}
        event["meta"] = {"$ref": REF.format(name="EventMeta")}
        error = schemas["ErrorBody"]["properties"]
        error_classes: list[type[SpoolError]] = [SpoolError, *STATUS]
        error["type"]["enum"] = sorted({cls.type for cls in error_classes})
        error["details"]["description"] = (
            "Context for programs: `field` names bad input by its path; a 402 names the "
            "`scope`, `period`, `limit` and `spent`.")
        schemas["Approval"]["properties"]["input"] = {
            "type": "object", "description": "The tool call's input, as the model sent it."}
        # A budget period's limit names tokens, usd or both (engine/domain/budgets.py: else a 400).
        schemas["LimitIn"]["anyOf"] = [
            {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
            for name in ("tokens", "usd")]
        assert "EventData" not in schemas
        schemas["EventData"] = self.of(AnyEventData)
        # Times go out in RFC 3339 with an offset (msgspec says so only of tz-aware types).
        for struct, fields in _datetime_fields(self._types).items():
            for field in fields:
                prop = schemas[struct]["properties"][field]
                for one in prop.get("anyOf", [prop]):
                    if one.get("type") == "string":
                        one["format"] = "date-time"
        return {"schemas": {name: clean_descriptions(schemas[name]) for name in sorted(schemas)}}


def _datetime_fields(types: list[Any]) -> dict[str, list[str]]:
    """The datetime fields of every Struct the types reach, by Struct name."""
    found: dict[str, list[str]] = {}
    seen: set[type] = set()

    def walk(info: Any) -> None:
        if isinstance(info, mi.StructType):
            if info.cls in seen:
                return
            seen.add(info.cls)
            for field in info.fields:
                if any(isinstance(t, mi.DateTimeType) for t in _alternatives(field.type)):
                    found.setdefault(info.cls.__name__, []).append(field.encode_name)
                walk(field.type)
        for t in _alternatives(info):
            if isinstance(t, mi.StructType) and t is not info:
                walk(t)
            elif isinstance(t, mi.CollectionType):
                walk(t.item_type)
            elif isinstance(t, mi.DictType):
                walk(t.value_type)

    for info in mi.multi_type_info(types):
        walk(info)
    return found


def _alternatives(info: Any) -> list[Any]:
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        return [t.type if isinstance(t, mi.Metadata) else t for t in info.types]
    return [info]


def _key(shape: Any) -> str:
    return repr(shape)


def _page_name(name: str) -> str:
    match = re.fullmatch(r"Page_(\w+)_", name)
    return f"{match[1]}Page" if match else name


def _rename(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (REF.format(name=names[v.rsplit("/", 1)[1]]) if k == "$ref" else
                    _rename(v, names)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    return value


def shapes(ops: Iterable[Operation]) -> list[Any]:
    """Every type the operations read or return, each once, in the order first met."""
    out: dict[str, Any] = {}
    for op in ops:
        for shape in (op.body, op.response, *(also[1] for also in op.also)):
            for one in shape if isinstance(shape, tuple) else (shape,):
                if one is not None:
                    out.setdefault(_key(one), one)
    return list(out.values())
