"""A backend's own YAML fields, declared once: each is a dataclass field that carries its
JSON Schema and where it sits in the file, so adding one is one line in the backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T", bound="BackendOptions")


def option(schema: dict[str, Any], default: Any = None, key: str | None = None) -> Any:
    """A YAML field: `key` is its dotted place in the file (the field's name at the top
    level when not given, `parameters.scheduler` for one under `parameters`)."""
    return dataclasses.field(default=default, metadata={"schema": schema, "key": key})


def _key(field: dataclasses.Field) -> tuple[str, ...]:
    return tuple((field.metadata.get("key") or field.name).split("."))


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """No fields of its own: a backend without options of its own uses it as it is."""

    @classmethod
    def schema_properties(cls) -> dict[str, Any]:
        """The fields as a `properties` map; nested keys become nested objects."""
        properties: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            *parents, leaf = _key(field)
            target = properties
            for parent in parents:
                target = target.setdefault(parent, {"type": "object", "properties": {}})["properties"]
            target[leaf] = field.metadata["schema"]
        return properties

    @classmethod
    def weights_problem(cls, path: Path) -> str | None:
        """Why the file a model names is not weights this backend reads (None: it may be),
        said when the YAML is read rather than when a worker fails to load it."""
        return None

    @classmethod
    def from_yaml(cls: type[T], data: Mapping[str, Any]) -> T:
        """The options a checked YAML mapping sets; absent or null ones keep their defaults."""
        values = {}
        for field in dataclasses.fields(cls):
            value: Any = data
            for part in _key(field):
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None:
                values[field.name] = value
        return cls(**values)


def merge_properties(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` laid over `base`, nested object schemas merged rather than replaced."""
    out = dict(base)
    for name, schema in extra.items():
        old = out.get(name)
        if isinstance(old, dict) and "properties" in old and "properties" in schema:
            out[name] = {**old, "properties": merge_properties(old["properties"], schema["properties"])}
        else:
            out[name] = schema
    return out
