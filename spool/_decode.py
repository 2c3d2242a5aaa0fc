"""JSON (decoded by httpx) into the typed answers of ``spool/_models.py``, by their type hints.

Lenient where the API may grow: a field the SDK does not know is dropped, an enum value it does
not know is kept as the string. Strict where it cannot: a required field missing, or a value of
the wrong JSON kind, is a ``ProtocolError``. Each type's decoder is built once, from its hints,
and reused (a stream decodes every event)."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, cast

from spool import _models
from spool._exceptions import ProtocolError

T = TypeVar("T")
Decoder = Callable[[Any, str], Any]  # (value, where it is) -> the decoded value

_SCALARS: dict[Any, tuple[type, ...]] = {
    str: (str,), int: (int,), float: (int, float), bool: (bool,), type(None): (type(None),),
}


def decode(cls: type[T], value: Any, **extra: Any) -> T:
    """``value`` as an instance of the model ``cls``; ``extra`` sets fields the body does not
    carry (``position``, from the answer's header)."""
    try:
        decoded = _Model.of(cast(type, cls))(value, cls.__name__, extra)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"the server's answer is not a {cls.__name__}: {exc}") from exc
    return cast(T, decoded)


class _Model:
    """A dataclass's decoder; its fields' decoders are resolved at first use (a model may
    refer to one defined after it)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.fields: list[tuple[str, str, Decoder]] | None = None

    @staticmethod
    @functools.cache
    def of(cls: type) -> _Model:
        return _Model(cls)

    def __call__(self, value: Any, where: str, extra: dict[str, Any] | None = None) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object, got {type(value).__name__}")
        if self.fields is None:
            hints = typing.get_type_hints(self.cls, vars(_models))
            self.fields = [(f.name, f.name.removesuffix("_"), _decoder(hints[f.name]))
                           for f in dataclasses.fields(self.cls)]
        kwargs = {name: decoder(value[wire], name) for name, wire, decoder in self.fields
                  if wire in value}
        if extra:
            kwargs.update(extra)
        return self.cls(**kwargs)


@functools.cache
def _decoder(tp: Any) -> Decoder:
    origin = typing.get_origin(tp)
    if tp is Any or origin is typing.Literal:
        return _same  # a value added to an enum later is still a string
    if dataclasses.is_dataclass(tp):
        return _Model.of(cast(type, tp))
    if origin is list:
        return _list(_decoder(typing.get_args(tp)[0]))
    if origin is dict:
        return _dict(_decoder(typing.get_args(tp)[1]))
    if origin is typing.Union or origin is types.UnionType:
        return _union(tuple(_decoder(option) for option in typing.get_args(tp)))
    kinds = _SCALARS.get(tp)
    return _same if kinds is None else _scalar(tp, kinds)


def _same(value: Any, where: str) -> Any:
    return value


def _list(item: Decoder) -> Decoder:
    def decode_list(value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"{where}: expected an array")
        return [item(each, where) for each in value]
    return decode_list


def _dict(item: Decoder) -> Decoder:
    def decode_dict(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object")
        return {key: item(each, f"{where}.{key}") for key, each in value.items()}
    return decode_dict


def _union(options: tuple[Decoder, ...]) -> Decoder:
    def decode_union(value: Any, where: str) -> Any:
        errors = []
        for option in options:
            try:
                return option(value, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{where}: matches none of its types ({'; '.join(errors)})")
    return decode_union


def _scalar(tp: type, kinds: tuple[type, ...]) -> Decoder:
    def decode_scalar(value: Any, where: str) -> Any:
        if not isinstance(value, kinds) or (tp is not bool and isinstance(value, bool)):
            raise TypeError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
        return float(cast(float, value)) if tp is float else value
    return decode_scalar
