"""The JSON Schemas a request carries (tool parameters, response formats): how to walk
their subschemas, and the one canonical form they cross the contract in."""

from __future__ import annotations

from typing import Any, Iterator

# Keywords whose values are schemas (or maps / lists of schemas) to look into.
SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SUBSCHEMAS = ("items", "additionalProperties")

# Keywords that only describe; a schema made of these alone allows any value.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
                          "writeOnly", "$schema", "$id"})
_ANY = ["string", "number", "boolean", "null", "object", "array"]


def subschemas(schema: Any, path: str) -> Iterator[tuple[Any, str]]:
    """The schema's direct subschemas, each with its path for messages."""
    if not isinstance(schema, dict):
        return
    for key in SUBSCHEMA_MAPS:
        for name, sub in (schema.get(key) or {}).items():
            yield sub, f"{path}.{key}.{name}"
    for key in SUBSCHEMA_LISTS:
        for i, sub in enumerate(schema.get(key) or []):
            yield sub, f"{path}.{key}[{i}]"
    for key in SUBSCHEMAS:
        if key in schema:
            yield schema[key], f"{path}.{key}"


def points_to(root: Any, ref: str) -> bool:
    """A local `$ref` names a part of the schema that exists."""
    target = root
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return True


def explicit(schema: Any) -> Any:
    """The canonical form: `true`, `{}` or a schema of annotations alone allow any value,
    and are spelled out as every type (grammar converters read them as objects only)."""
    if schema is True or (isinstance(schema, dict) and not set(schema) - _ANNOTATIONS):
        return {**(schema if isinstance(schema, dict) else {}), "type": list(_ANY)}
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: explicit(v) for k, v in out[key].items()}
    for key in SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [explicit(v) for v in out[key]]
    if "items" in out and out["items"] is not False:
        out["items"] = explicit(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = explicit(out["additionalProperties"])
    return out
