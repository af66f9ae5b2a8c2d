"""Go's values as Python holds them, and how Go prints them: fmt's %v (what an action
writes) and encoding/json (what sprig's toJson writes).

A Go struct is a `GoStruct` (its fields in order; an unknown field is an error); a Go map
is a dict (a missing key is nothing: `<no value>`); a slice is a list; numbers decoded from
JSON are floats, as Go's float64."""

from __future__ import annotations

import json
import math
from typing import Any


class GoStruct:
    """A struct value: named fields in declaration order; `tags` are their `json:"..."` tags."""

    __slots__ = ("type_name", "fields", "tags")

    def __init__(self, type_name: str, fields: dict[str, Any], tags: dict[str, str] | None = None) -> None:
        self.type_name = type_name
        self.fields = fields
        self.tags = tags or {}

    def __repr__(self) -> str:
        return f"{self.type_name}({self.fields!r})"


class NilList(list):
    """A typed nil slice: empty, but `null` in JSON."""


class NilDict(dict):
    """A typed nil map: empty, but `null` in JSON. `zero` is what `index` gives for a
    missing key (the element type's zero value: "" for map[string]string)."""

    zero: Any = None


class StringMap(dict):
    """A map[string]string: `index` of a missing key is ""."""

    zero = ""


class NilStringMap(NilDict):
    zero = ""


def is_true(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, slices and maps are false; a struct is true."""
    if value is None:
        return False
    if isinstance(value, GoStruct):
        return True
    if isinstance(value, (bool, int, float)):
        return bool(value)
    if isinstance(value, (str, list, tuple, dict)):
        return len(value) > 0
    return True


def format_float(number: float) -> str:
    """fmt's %v of a float64 (strconv.FormatFloat(f, 'g', -1, 64)): the shortest digits that
    read back the same, in %e form when the decimal exponent is below -4 or at least 6."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0:
        return "-0" if math.copysign(1, number) < 0 else "0"
    digits, exp = _shortest(number)
    if exp < -4 or exp >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return ("-" if number < 0 else "") + f"{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return _plain(number, digits, exp)


def _shortest(number: float) -> tuple[str, int]:
    """The shortest round-tripping decimal digits of |number| and its decimal exponent."""
    text = repr(abs(number))
    if "e" in text:
        mantissa, exponent = text.split("e")
        exp = int(exponent)
    else:
        mantissa, exp = text, 0
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    exp += len(whole.lstrip("0")) - 1 if whole.strip("0") else -(len(fraction) - len(fraction.lstrip("0"))) - 1
    return digits.rstrip("0") or "0", exp


def _plain(number: float, digits: str, exp: int) -> str:
    sign = "-" if number < 0 else ""
    if exp >= 0:
        whole = digits[:exp + 1].ljust(exp + 1, "0")
        fraction = digits[exp + 1:]
    else:
        whole = "0"
        fraction = "0" * (-exp - 1) + digits
    return sign + whole + ("." + fraction if fraction else "")


MAX_TEXT = 1 << 20  # characters of one printed or JSON value: shared lists can stand for far more


class _Budget:
    """Characters left for one value's text; nested lists that share themselves would
    otherwise print as exponentially long text."""

    def __init__(self) -> None:
        self.left = MAX_TEXT

    def spend(self, text: str) -> str:
        self.left -= len(text)
        if self.left < 0:
            raise ValueError(f"the value's text is longer than {MAX_TEXT} characters")
        return text


def format_value(value: Any, top: bool = True, budget: _Budget | None = None) -> str:
    """fmt's %v. At the top of an action, nil is `<no value>` (Go prints an empty interface
    that way); inside a slice or map, or through print/printf, it is `<nil>`."""
    if isinstance(value, (list, tuple, dict, GoStruct)):
        budget = budget or _Budget()
        return budget.spend(_format_container(value, budget))
    return _format_scalar(value, top)


def _format_container(value: Any, budget: _Budget) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(budget.spend(format_value(v, False, budget)) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(budget.spend(f"{format_value(k, False, budget)}:{format_value(value[k], False, budget)}")
                                 for k in _sorted(value)) + "]"
    return "{" + " ".join(budget.spend(format_value(v, False, budget)) for v in value.fields.values()) + "}"


def _format_scalar(value: Any, top: bool) -> str:
    if value is None:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    return str(value)


def _sorted(mapping: dict) -> list:
    try:
        return sorted(mapping)
    except TypeError:
        return list(mapping)


_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


_JSON_LINE_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029"}  # kept even without HTML escaping


def _json_string(text: str, html: bool = True) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    escapes = _JSON_ESCAPES if html else _JSON_LINE_ESCAPES
    return "".join(escapes.get(c, c) for c in encoded)


def _json_float(number: float) -> str:
    """encoding/json's float64: like %v, but %e only below 1e-6 or from 1e21, and `e-7` not `e-07`."""
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"json: unsupported value: {format_float(number)}")
    if number == 0:
        return "-0" if math.copysign(1, number) < 0 else "0"
    digits, exp = _shortest(number)
    if abs(number) < 1e-6 or abs(number) >= 1e21:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return ("-" if number < 0 else "") + f"{head}e{'-' if exp < 0 else '+'}{abs(exp)}"
    return _plain(number, digits, exp)


def to_json(value: Any, indent: str | None = None, level: int = 0, budget: _Budget | None = None,
            html: bool = True) -> str:
    """encoding/json.Marshal (MarshalIndent when `indent` is given): map keys sorted, struct
    fields in order, `<`, `>` and `&` escaped (not with `html=False`: sprig's toRawJson)."""
    budget = budget or _Budget()
    return budget.spend(_to_json(value, indent, level, budget, html))


def _to_json(value: Any, indent: str | None, level: int, budget: _Budget, html: bool) -> str:
    def nest(items: list[str], open_: str, close: str) -> str:
        if not items:
            return open_ + close
        if indent is None:
            return open_ + ",".join(items) + close
        pad = "\n" + indent * (level + 1)
        return open_ + pad + ("," + pad).join(items) + "\n" + indent * level + close

    if value is None or isinstance(value, (NilList, NilDict)):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_string(value, html)
    separator = ":" if indent is None else ": "
    if isinstance(value, (list, tuple)):
        return nest([to_json(v, indent, level + 1, budget, html) for v in value], "[", "]")
    if isinstance(value, dict):
        return nest([_json_string(str(k), html) + separator + to_json(value[k], indent, level + 1, budget, html)
                     for k in sorted(value, key=str)], "{", "}")
    if isinstance(value, GoStruct):
        items = []
        for name, field_value in value.fields.items():
            key, _, options = value.tags.get(name, name).partition(",")
            if key == "-" or ("omitempty" in options.split(",") and not is_true(field_value)):
                continue
            items.append(_json_string(key or name, html) + separator
                         + to_json(field_value, indent, level + 1, budget, html))
        return nest(items, "{", "}")
    raise ValueError(f"json: unsupported type: {type(value).__name__}")
