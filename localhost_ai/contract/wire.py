"""The wire form of the contract's types: plain JSON-able dicts and lists (bytes stay
bytes; the worker protocol carries them as blobs), and back again from the type hints.

A type that is one member of a union carries its `KIND` as `type` on the wire, which is
how the other side tells the members apart."""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any, Callable, Union


class WireError(ValueError):
    """A wire form that does not fit the type it is read as."""


def dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
        kind = getattr(type(value), "KIND", None)
        if kind is not None:
            out["type"] = kind
        return out
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def load(tp: Any, data: Any) -> Any:
    """`data` read as `tp`: dataclasses, tagged unions, Optional, list, tuple, dict and scalars."""
    return _reader(tp)(data)


def _same(data: Any) -> Any:
    return data


@lru_cache(maxsize=None)
def _reader(tp: Any) -> Callable[[Any], Any]:
    """How to read `tp`, worked out once per type: a stream's every token is read with it."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if len(members) == 1:
            only = _reader(members[0])
            return lambda data: None if data is None else only(data)
        tagged = {getattr(m, "KIND", None): _reader(m) for m in members if dataclasses.is_dataclass(m)}
        untagged = [(m, _reader(m)) for m in members if not dataclasses.is_dataclass(m)]

        def union(data: Any) -> Any:
            if data is None:
                return None
            if isinstance(data, dict) and data.get("type") in tagged:
                return tagged[data["type"]](data)
            for member, read in untagged:
                if _fits(member, data):
                    return read(data)
            raise WireError(f"{data!r} fits none of {tp}")
        return union
    if origin in (list, tuple):
        args = typing.get_args(tp)
        item = _reader(args[0] if args else Any)
        make = tuple if origin is tuple else list

        def sequence(data: Any) -> Any:
            if not isinstance(data, (list, tuple)):
                raise WireError(f"expected a list, got {type(data).__name__}")
            return make([item(v) for v in data])
        return sequence
    if origin is dict:
        value = _reader((typing.get_args(tp) or (str, Any))[1])
        return lambda data: {k: value(v) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        fields = [(f.name, _reader(hints[f.name])) for f in dataclasses.fields(tp)]

        def record(data: Any) -> Any:
            if not isinstance(data, dict):
                raise WireError(f"expected an object for {tp.__name__}")
            return tp(**{name: read(data[name]) for name, read in fields if name in data})
        return record
    return _same


def _fits(tp: Any, data: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    if tp is Any:
        return True
    if origin in (list, tuple):
        return isinstance(data, (list, tuple))
    if origin is float:
        return isinstance(data, (int, float)) and not isinstance(data, bool)
    return isinstance(origin, type) and isinstance(data, origin)
