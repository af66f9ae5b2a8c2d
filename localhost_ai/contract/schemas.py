"""The JSON Schemas a request carries (tool parameters, response formats): how to walk
their subschemas, and the one canonical form they cross the contract in."""

from __future__ import annotations

import re
from typing import Any, Iterator

try:  # Python 3.11 and later
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # Python 3.10
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

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
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                yield sub, f"{path}.{key}.{name}"
    for key in SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
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


# What one schema may ask of a grammar.  Grammars spell repetitions out (`maxItems: 5` is
# five nested optional items), so these bound the grammar's size and llama.cpp's recursion
# while it reads it; real tools and response formats stay far below them.
MAX_REPETITION = 1000
MAX_SCHEMA_DEPTH = 64
MAX_PATTERN_SIZE = 10_000  # elements a pattern's grammar spells out, its repetitions expanded
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength")


_REPEATS = tuple(getattr(sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(sre, name))


class _PatternTooBig(Exception):
    pass


def _pattern_size(items: Any) -> int:
    total = 0
    for op, arg in items:
        if op in _REPEATS:
            low, high, sub = arg
            for count in (low, high):
                if count != sre.MAXREPEAT and count > MAX_REPETITION:
                    raise _PatternTooBig(f"repeats {count:,} times; a grammar repeats at most {MAX_REPETITION:,}")
            total += max(high if high != sre.MAXREPEAT else low + 1, 1) * _pattern_size(sub)
        elif op == sre.SUBPATTERN:
            total += _pattern_size(arg[-1])
        elif op == sre.BRANCH:
            total += sum(_pattern_size(branch) for branch in arg[1])
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            total += _pattern_size(arg[1])
        else:
            total += 1
        if total > MAX_PATTERN_SIZE:
            raise _PatternTooBig(f"spells out more than {MAX_PATTERN_SIZE:,} elements once its repetitions are "
                                 "expanded")
    return total


def _pattern_problem(pattern: str) -> str | None:
    try:
        _pattern_size(sre_parse.parse(pattern))
    except _PatternTooBig as exc:
        return str(exc)
    except RecursionError:
        return "nests too deeply"
    except (re.error, OverflowError, ValueError):
        return None  # not a regular expression Python reads; the grammar converter judges it
    return None


def bounds_problem(schema: Any) -> str | None:
    """What in the schema is beyond what a grammar may spell out, found without recursion
    (the schema may be nested far deeper than Python's stack)."""
    stack = [(schema, "the root", 1)]
    while stack:
        node, path, depth = stack.pop()
        if not isinstance(node, dict):
            continue
        if depth > MAX_SCHEMA_DEPTH:
            return f"nests deeper than {MAX_SCHEMA_DEPTH} levels"
        for key in _COUNTS:
            value = node.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_REPETITION:
                return f"'{key}' at {path} is {value:,}; a grammar repeats at most {MAX_REPETITION:,} times"
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            problem = _pattern_problem(pattern)
            if problem:
                return f"'pattern' at {path} {problem}"
        stack.extend((sub, sub_path, depth + 1) for sub, sub_path in subschemas(node, path))
    return None
