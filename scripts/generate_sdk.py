"""Generates the SDK's derived modules, so they cannot drift from their sources:

- ``spool/_models.py``: a frozen dataclass per response schema of ``docs/openapi.json``;
- ``spool/_sync/``: the synchronous client, rewritten from ``spool/_async/`` token by token
  (``async def`` -> ``def``, ``await`` dropped, ``AsyncClient`` -> ``Client``, ...) as httpcore
  does; ``_io.py`` is written by hand in both folders.

``python scripts/generate_sdk.py`` writes them; ``--check`` exits 1 when a file is not current
(tests/spool/test_generated.py runs that).
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT / "docs" / "openapi.json"
MODELS = ROOT / "spool" / "_models.py"
ASYNC_DIR = ROOT / "spool" / "_async"
SYNC_DIR = ROOT / "spool" / "_sync"
# Each flavour's own: its waiting primitives (sleep, wake-up) and its package docstring.
HAND_WRITTEN = {Path("_io.py"), Path("__init__.py")}

# The event's data stays a dict: its shape depends on ``type``, and a type the SDK does not know
# yet (the log only grows) must still decode.
OPAQUE = {"EventData"}
HEADER = '"""{doc}\n\nGenerated from docs/openapi.json (scripts/generate_sdk.py): do not edit."""\n'

# ------------------------------------------------------------------------------------- models


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {_ref_name(schema["$ref"])} if "$ref" in schema else set()
        for value in schema.values():
            found |= _refs(value)
        return found
    if isinstance(schema, list):
        return set().union(*(_refs(item) for item in schema)) if schema else set()
    return set()


def _response_schemas(document: dict[str, Any]) -> tuple[list[str], set[str]]:
    """The schemas reachable from 2xx answers (sorted), and those answered by writes."""
    schemas = document["components"]["schemas"]
    roots: set[str] = set()
    written: set[str] = set()
    for operations in document["paths"].values():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    found = _refs(response.get("content", {}))
                    roots |= found
                    if method != "get":
                        written |= found
    seen: set[str] = set()
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in OPAQUE:
            continue
        seen.add(name)
        todo += sorted(_refs(schemas[name]) - seen)
    return sorted(seen), written


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return "dict[str, Any]" if name in OPAQUE else name
    if "anyOf" in schema:
        parts = [_type(option) for option in schema["anyOf"]]
        return " | ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return "Literal[" + ", ".join(json.dumps(value) for value in schema["enum"]) + "]"
    kind = schema.get("type")
    if kind == "null":
        return "None"
    if kind == "array":
        return f"list[{_type(schema.get('items', {}))}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        value = _type(extra) if isinstance(extra, dict) else "Any"
        return f"dict[str, {value}]"
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(
        str(kind), "Any")


def _default(schema: dict[str, Any], type_: str) -> str:
    """The field's default when the server may leave it out."""
    if "default" in schema:
        value = schema["default"]
        if isinstance(value, dict) and "$ref" in schema:
            return ""  # a model: the server always sends it (msgspec writes every field)
        if isinstance(value, list | dict):
            kind = "list" if isinstance(value, list) else "dict"
            if value:
                return f"field(default_factory=lambda: {value!r})"
            return f"field(default_factory={kind})"
        if isinstance(value, str | int | float | bool) or value is None:
            return repr(value)
    if type_.startswith("list["):
        return "field(default_factory=list)"
    if type_.startswith("dict["):
        return "field(default_factory=dict)"
    return "None"


def _attribute(name: str) -> str:
    return f"{name}_" if keyword.iskeyword(name) else name


def _model(name: str, schema: dict[str, Any], written: bool) -> str:
    lines = ["@dataclass(frozen=True, kw_only=True, slots=True)", f"class {name}:"]
    doc = (schema.get("description") or schema.get("title") or name).strip().replace('"""', "'")
    lines += ['    """' + "\n    ".join(textwrap.wrap(doc, 92)) + '"""', ""]
    required = set(schema.get("required", []))
    properties: dict[str, Any] = schema.get("properties", {})
    for prop, sub in properties.items():
        type_ = _type(sub)
        attribute = _attribute(prop)
        if prop in required:
            lines.append(f"    {attribute}: {type_}")
        else:
            default = _default(sub, type_)
            if not default:
                lines.append(f"    {attribute}: {type_}")
                continue
            if default == "None" and "None" not in type_.split(" | "):
                type_ += " | None"
            lines.append(f"    {attribute}: {type_} = {default}")
    if written and "position" not in properties:
        lines.append("    # The Spool-Position of the write that answered (None: none was made).")
        lines.append("    position: int | None = field(default=None, compare=False)")
    return "\n".join(lines) + "\n"


def models_source(document: dict[str, Any]) -> str:
    names, written = _response_schemas(document)
    schemas = document["components"]["schemas"]
    head = HEADER.format(doc="The API's answers as typed, frozen dataclasses (one per schema).")
    parts = [
        head,
        "from __future__ import annotations\n",
        "from dataclasses import dataclass, field",
        "from typing import Any, Literal\n",
        "__all__ = [\n" + "".join(f"    {json.dumps(name)},\n" for name in names) + "]\n",
    ]
    parts += ["\n" + _model(name, schemas[name], name in written) for name in names]
    return "\n".join(parts)


# ------------------------------------------------------------------------------ the sync copy

# Whole words, in order (longer first where one contains another).
_UNASYNC = [
    ("AsyncIterator", "Iterator"),
    ("AsyncGenerator", "Generator"),
    ("AsyncIterable", "Iterable"),
    ("AsyncClient", "Client"),
    ("AsyncBaseTransport", "BaseTransport"),
    ("AsyncByteStream", "SyncByteStream"),
    ("aiter_sse", "iter_sse"),
    ("aiter_bytes", "iter_bytes"),
    ("aiter_lines", "iter_lines"),
    ("aiter_raw", "iter_raw"),
    ("aconnect_sse", "connect_sse"),
    ("aread", "read"),
    ("aclose", "close"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("__aiter__", "__iter__"),
    ("__anext__", "__next__"),
    ("StopAsyncIteration", "StopIteration"),
    ("asynccontextmanager", "contextmanager"),
    ("spool._async", "spool._sync"),
    ("_async", "_sync"),
]
_ASYNC_NAME = re.compile(r"\bAsync([A-Z]\w*)")  # our own AsyncPager -> Pager, AsyncAgents -> Agents


def unasync(source: str) -> str:
    """``source`` without async, continuation lines aligned with their bracket again."""
    converted = _unasync(source)
    return "".join(_realign(source.splitlines(True), converted.splitlines(True)))


def _realign(old_lines: list[str], new_lines: list[str]) -> list[str]:
    """Lines continued inside a bracket they were aligned with move left by what the
    conversion removed before that bracket (``async ``, ``await ``, ``Async``)."""
    out: list[str] = []
    depth, shift, pending = 0, 0, -1
    for old, new in zip(old_lines, new_lines, strict=True):
        indent = len(old) - len(old.lstrip(" "))
        if pending >= 0:  # the first continuation line says whether the block is aligned
            shift, pending = (shift if indent == pending else 0), -1
        if depth > 0 and shift and new.startswith(" " * shift):
            new = new[shift:]
        opened = _unclosed(old)
        if depth == 0 and opened is not None:
            shift = opened - len(_unasync(old[:opened]))
            pending = opened + 1
        depth = max(0, depth + sum(old.count(c) for c in "([{") - sum(old.count(c) for c in ")]}"))
        if depth == 0:
            shift, pending = 0, -1
        out.append(new)
    return out


def _unclosed(line: str) -> int | None:
    """The column of the innermost bracket ``line`` leaves open, if any."""
    stack: list[int] = []
    for column, char in enumerate(line):
        if char in "([{":
            stack.append(column)
        elif char in ")]}" and stack:
            stack.pop()
    return stack[-1] if stack else None


def _unasync(source: str) -> str:
    out = source
    for old, new in _UNASYNC:
        out = re.sub(rf"(?<!\w){re.escape(old)}\b", new, out)
    out = _ASYNC_NAME.sub(r"\1", out)
    out = re.sub(r"\basync (def|with|for)\b", r"\1", out)
    out = re.sub(r"\bawait ", "", out)
    out = re.sub(r"\banext\(", "next(", out)
    out = out.replace("An async iterator", "An iterator")
    return out


def sync_sources() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for path in sorted(ASYNC_DIR.rglob("*.py")):
        relative = path.relative_to(ASYNC_DIR)
        if relative in HAND_WRITTEN:
            continue
        text = unasync(path.read_text())
        note = f"# Generated from spool/_async/{relative} (scripts/generate_sdk.py): do not edit.\n"
        note += "# ruff: noqa\n"  # its source is checked; renamed, the imports sort otherwise
        files[SYNC_DIR / relative] = note + text
    return files


def outputs() -> dict[Path, str]:
    document = json.loads(OPENAPI.read_text())
    return {MODELS: models_source(document), **sync_sources()}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if "--check" not in argv:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{'stale' if '--check' in argv else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
