"""JSON (decoded by httpx) into the typed answers of ``spool/_models.py``, by their type hints.

Lenient where the API may grow: a field the SDK does not know is dropped, an enum value it does
not know is kept as the string. Strict where it cannot: a required field missing, or a value of
the wrong JSON kind, is a ``ProtocolError``."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar, cast

from spool import _models
from spool._exceptions import ProtocolError

T = TypeVar("T")

_SCALARS: dict[type, tuple[type, ...]] = {
    str: (str,), int: (int,), float: (int, float), bool: (bool,), type(None): (type(None),),
}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(_models))


def decode(cls: type[T], value: Any, **extra: Any) -> T:
    """``value`` as an instance of the model ``cls``; ``extra`` sets fields the body does not
    carry (``position``, from the answer's header)."""
    try:
        decoded = _model(cls, value, extra)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"the server's answer is not a {cls.__name__}: {exc}") from exc
    return cast(T, decoded)


def _model(cls: type, value: Any, extra: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    hints = _hints(cls)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        wire = field.name.removesuffix("_") if field.name.endswith("_") else field.name
        if wire in value:
            fields[field.name] = _value(hints[field.name], value[wire], field.name)
    fields.update(extra)
    return cls(**fields)


def _value(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _model(cast(type, tp), value, {})
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"{where}: expected an array")
        (item,) = typing.get_args(tp)
        return [_value(item, each, f"{where}[{i}]") for i, each in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object")
        item = typing.get_args(tp)[1]
        return {key: _value(item, each, f"{where}.{key}") for key, each in value.items()}
    if origin is typing.Literal:
        return value  # a value added to the enum later is still a string
    if origin is typing.Union or origin is types.UnionType:
        return _union(typing.get_args(tp), value, where)
    kinds = _SCALARS.get(tp)
    if kinds is not None:
        if not isinstance(value, kinds) or (tp is not bool and isinstance(value, bool)):
            raise TypeError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
        return float(cast(float, value)) if tp is float else value
    return value


def _union(options: tuple[Any, ...], value: Any, where: str) -> Any:
    errors = []
    for option in options:
        try:
            return _value(option, value, where)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise TypeError(f"{where}: matches none of its types ({'; '.join(errors)})")
