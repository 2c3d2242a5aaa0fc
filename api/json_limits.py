"""Caps on free-form JSON in request bodies: the fields typed ``Any`` (an agent's
``model.params``, ``tools[].input_schema``, ``model.script[].tool_calls[].input``, and any such
field a body type has) may nest at most ``SPOOL_MAX_JSON_DEPTH`` levels of objects and arrays
and take at most ``SPOOL_MAX_JSON_FIELD_BYTES`` bytes of JSON; past that, 422 naming the field.

The raw body is checked before msgspec decodes it: msgspec recurses, and a thousand levels is a
RecursionError (a 500). Outside free-form fields a body may nest ``STRUCTURE_DEPTH`` levels more
than the cap (its typed structure is far shallower). Most bodies pass a byte-level test at once;
the others are scanned token by token, following the body's type to know the fields' paths."""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec.inspect as mi

from api.errors import UnprocessableEntity

STRUCTURE_DEPTH = 16
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
# Inside free-form JSON only brackets matter: one match runs over strings and all else to the
# next bracket (possessive: no backtracking when there is none).
_FREE_RUN = re.compile(rb'(?:[^"\[\]{}]|"[^"\\]*(?:\\.[^"\\]*)*")*+[\[\]{}]')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_OPEN, _OBJECT, _COMMA, _QUOTE = b"[{", ord("{"), ord(","), ord('"')


def check(raw: bytes, body_type: Any, *, depth: int, field_bytes: int) -> None:
    """422 naming the field when free-form JSON in ``raw`` nests deeper than ``depth`` or is
    larger than ``field_bytes``, or the body nests deeper than ``depth + STRUCTURE_DEPTH``."""
    if len(raw) <= field_bytes and _max_depth(raw) <= depth:
        return  # no part of it can be deeper or larger
    _Scan(body_type, depth, field_bytes).run(raw)


def _max_depth(raw: bytes) -> int:
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class _Frame:
    __slots__ = ("index", "info", "is_object", "key", "path")

    def __init__(self, is_object: bool, info: Any, path: str) -> None:
        self.is_object, self.info, self.path = is_object, info, path
        self.key: str | None = None
        self.index = 0


class _Scan:
    def __init__(self, body_type: Any, depth: int, field_bytes: int) -> None:
        self._root = mi.type_info(body_type)
        self._depth, self._bytes = depth, field_bytes

    def run(self, raw: bytes) -> None:
        stack: list[_Frame] = []
        free: tuple[int, str, int] | None = None  # (stack depth, path, offset) of a free field
        expect_key = False
        at = 0
        while (token := _TOKEN.search(raw, at) if free is None else _FREE_RUN.match(raw, at)):
            at = token.end()
            if free is not None and at - free[2] > self._bytes:  # no need to find its end
                raise UnprocessableEntity(
                    f"{free[1]} is over {self._bytes} bytes of JSON", field=free[1])
            first = token[0][-1]  # a string's closing quote, or the bracket or comma
            if first == _QUOTE:
                if expect_key:
                    stack[-1].key = token[0][1:-1].decode("utf-8", "replace")
                    expect_key = False
            elif first == _COMMA:
                if stack and stack[-1].is_object:
                    expect_key = True
                elif stack:
                    stack[-1].index += 1
            elif first in _OPEN:
                slot, path = self._slot(stack[-1]) if stack else (self._root, "")
                info = _pick(slot, first == _OBJECT)
                if free is None and _is_free(info):
                    free = (len(stack), path, token.start())
                stack.append(_Frame(first == _OBJECT, info, path))
                expect_key = first == _OBJECT
                if free is not None and len(stack) - free[0] > self._depth:
                    raise UnprocessableEntity(
                        f"{free[1]} nests objects and arrays more than {self._depth} levels "
                        "deep", field=free[1])
                if free is None and len(stack) > self._depth + STRUCTURE_DEPTH:
                    raise UnprocessableEntity("the body nests objects and arrays too deep",
                                              field=path or "body")
            else:  # a closing bracket
                if stack:
                    stack.pop()
                expect_key = False
                if free is not None and len(stack) == free[0]:
                    if token.end() - free[2] > self._bytes:
                        raise UnprocessableEntity(
                            f"{free[1]} is over {self._bytes} bytes of JSON", field=free[1])
                    free = None

    @staticmethod
    def _slot(parent: _Frame) -> tuple[Any, str]:
        """The type and path of the value that starts in ``parent`` now (past what the
        body's type describes, the path stays where the type ended)."""
        info = parent.info
        if info is None or isinstance(info, mi.AnyType):
            return None, parent.path
        if not parent.is_object:
            item = info.item_type if isinstance(info, mi.ListType) else None
            return item, f"{parent.path}[{parent.index}]"
        key = parent.key or ""
        if isinstance(info, mi.DictType):
            return info.value_type, f"{parent.path}[...]"
        found = None
        if isinstance(info, mi.StructType):
            found = next((f.type for f in info.fields if f.encode_name == key), None)
        return found, f"{parent.path}.{key}" if parent.path else key


def _pick(info: Any, is_object: bool) -> Any:
    """The type a container of this kind has where ``info`` is expected (None: not known)."""
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        fits = [t for t in info.types if _pick(t, is_object) is not None]
        return _pick(fits[0], is_object) if len(fits) == 1 else None
    kinds = (mi.StructType, mi.DictType) if is_object else (mi.ListType,)
    return info if isinstance(info, (*kinds, mi.AnyType)) else None


def _is_free(info: Any) -> bool:
    """Whether a container of this type is free-form JSON (anything goes inside)."""
    inner = info.value_type if isinstance(info, mi.DictType) else (
        info.item_type if isinstance(info, mi.ListType) else info)
    while isinstance(inner, mi.Metadata):
        inner = inner.type
    return isinstance(inner, mi.AnyType)
