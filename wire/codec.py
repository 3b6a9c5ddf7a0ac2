"""One codec for the typed messages of the internal protocols: frozen dataclasses to JSON
objects and back, every field checked against its annotation.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``bytes`` (hex in JSON),
``X | None``, ``tuple[X, ...]``, ``dict[str, X]``, and nested dataclasses of the same
kind. Decoding never raises anything but ``WireError``, whose message names the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

from wire.errors import WireError

T = TypeVar("T")
MAX_TEXT = 1 << 20  # characters in any one string field
MAX_ITEMS = 100_000  # items in any one tuple or mapping field


def to_json(message: object) -> dict[str, Any]:
    """The JSON object for a message dataclass (no ``type`` key: the caller adds it)."""
    if not dataclasses.is_dataclass(message) or isinstance(message, type):
        raise TypeError(f"not a message: {message!r}")
    return {f.name: _out(getattr(message, f.name)) for f in dataclasses.fields(message)}


def _out(value: object) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_out(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _out(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    return value


def from_json(cls: type[T], value: object) -> T:
    """A ``cls`` from its JSON object; ``WireError`` naming what is wrong."""
    if not isinstance(value, dict):
        raise WireError(f"{cls.__name__}: not a JSON object")
    hints = _hints(cls)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in value:
            kwargs[field.name] = _in(hints[field.name], value[field.name], field.name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise WireError(f"{cls.__name__}: {field.name} is missing")
    return cls(**kwargs)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _in(hint: Any, value: object, name: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{name}: unions of two types are not supported")
        return _in(inner[0], value, name)
    if origin is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise WireError(f"{name} is not a list")
        return tuple(_in(item, v, name) for v in value)
    if origin is dict:
        item = get_args(hint)[1]
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            raise WireError(f"{name} is not an object")
        return {str(k): _in(item, v, name) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise WireError(f"{name} is not true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(f"{name} is not an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WireError(f"{name} is not a number")
        if not math.isfinite(value):
            raise WireError(f"{name} is not a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise WireError(f"{name} is not a string")
        return value
    if hint is bytes:
        if not isinstance(value, str) or len(value) > 2 * MAX_TEXT:
            raise WireError(f"{name} is not hex")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise WireError(f"{name} is not hex") from None
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value)  # type: ignore[arg-type]
    raise TypeError(f"{name}: no codec for {hint!r}")


def dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def loads(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WireError("not JSON") from None
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    return value


class Registry:
    """Message classes by the name their JSON carries under ``key``."""

    def __init__(self, key: str, classes: tuple[type, ...]) -> None:
        self.key = key
        self.by_name: dict[str, type] = {}
        self.by_class: dict[type, str] = {}
        for cls in classes:
            name = cls.KIND  # type: ignore[attr-defined]
            self.by_name[name] = cls
            self.by_class[cls] = name

    def encode(self, message: object) -> bytes:
        name = self.by_class.get(type(message))
        if name is None:
            raise TypeError(f"not a message of this protocol: {type(message).__name__}")
        return dumps({self.key: name, **to_json(message)})

    def decode(self, data: bytes) -> object:
        value = loads(data)
        name = value.pop(self.key, None)
        cls = self.by_name.get(name) if isinstance(name, str) else None
        if cls is None:
            raise WireError(f"unknown {self.key} {str(name)[:32]!r}")
        return from_json(cls, value)
