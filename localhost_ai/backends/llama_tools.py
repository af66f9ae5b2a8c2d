"""Constrained decoding for llama.cpp models: the grammar that makes the model write
tool calls or the asked response format.

The grammars come from llama-cpp-python's JSON-Schema converter; each tool's schema is
converted on its own (its `$ref`s point into its own `$defs`) and the calls are
composed around them: `{"name": "<tool>", "arguments": <its schema>}`, one call or a
list of them.  A schema that uses what a grammar cannot enforce is refused.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Iterable, Iterator

from localhost_ai.backends.tool_prompt import ToolUse
from localhost_ai.contract.generate import ResponseFormat, Tool
from localhost_ai.contract.schemas import bounds_problem, subschemas
from localhost_ai.errors import InvalidRequest

# A JSON string character: the converter's own rule lets raw control characters
# through, which strict JSON readers refuse.
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'

# Validation keywords a grammar cannot enforce: a schema that uses one would let the
# model produce values the schema refuses, so it is refused instead.
UNENFORCEABLE = frozenset({
    "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies",
    "patternProperties", "propertyNames", "minProperties", "maxProperties", "contains",
    "minContains", "maxContains", "uniqueItems", "multipleOf", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "unevaluatedProperties", "unevaluatedItems",
    "$dynamicRef", "$recursiveRef",
})


# An integer's bounds are enforced: its grammar spells out the digits in range.
INTEGER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _unenforceable(schema: Any, path: str) -> Iterator[str]:
    if schema is False and not path.endswith((".additionalProperties", ".items")):
        yield f"a false schema (no value is valid) at {path}"
    if not isinstance(schema, dict):
        return
    integer = schema.get("type") == "integer"
    for key in schema:
        if key in UNENFORCEABLE and not (integer and key in INTEGER_BOUNDS):
            yield f"'{key}' at {path}"
    if integer and any(key in schema for key in INTEGER_BOUNDS):
        try:
            low, high = integer_range(schema)
        except (TypeError, ValueError, OverflowError):
            yield f"bounds that are not numbers at {path}"
        else:
            low = -MAX_INTEGER if low is None else low
            high = MAX_INTEGER if high is None else high
            if max(low, -MAX_INTEGER) > min(high, MAX_INTEGER):
                yield f"bounds no integer of at most 16 digits meets at {path}"
            listed = schema["enum"] if isinstance(schema.get("enum"), list) else \
                [schema["const"]] if "const" in schema else []
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not low <= v <= high for v in listed):
                yield f"'enum' or 'const' values outside its bounds at {path}"
    ref = schema.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        yield f"the non-local $ref '{ref}' at {path}"
    for sub, sub_path in subschemas(schema, path):
        yield from _unenforceable(sub, sub_path)


def check_enforceable(schema: Any, what: str, param: str) -> None:
    """A 400 naming what in the schema a grammar cannot enforce, or would be too large for
    (checked here again, whoever sent the request: the grammar is built in this process)."""
    bounds = bounds_problem(schema)
    if bounds:
        raise InvalidRequest(f"{what}: {bounds}.", param=param, code="schema_too_complex")
    try:
        problems = list(_unenforceable(schema, "the root"))
    except RecursionError:
        raise InvalidRequest(f"{what}: nested too deeply.", param=param, code="invalid_schema") from None
    if problems:
        raise InvalidRequest(
            f"{what}: uses {', '.join(problems[:5])}, which constrained decoding cannot enforce; "
            "remove it, or turn the model's grammar off (function.grammar.disable).",
            param=param, code="unsupported_schema")


def integer_range(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """The least and greatest integer the schema's bounds allow (None: unbounded)."""
    lows, highs = [], []
    if schema.get("minimum") is not None:
        lows.append(math.ceil(schema["minimum"]))
    if schema.get("exclusiveMinimum") is not None:
        lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
    if schema.get("maximum") is not None:
        highs.append(math.floor(schema["maximum"]))
    if schema.get("exclusiveMaximum") is not None:
        highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
    return (max(lows) if lows else None), (min(highs) if highs else None)


def _digits_between(low: str, high: str) -> list[str]:
    """GBNF sequences matching exactly the numbers from `low` to `high`, two digit strings
    of one length (leading zeros allowed: these are the tails of longer numbers)."""
    if low == high:
        return [f'"{low}"']
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    rest = len(low) - 1
    if low[0] == high[0]:
        return [f'"{low[0]}" {tail}' for tail in _digits_between(low[1:], high[1:])]
    out = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != "0" * rest:  # low's own first digit, from low's tail up
        out += [f'"{low[0]}" {tail}' for tail in _digits_between(low[1:], "9" * rest)]
        first += 1
    if high[1:] != "9" * rest:
        last -= 1
    if first <= last:  # whole runs in between: any tail
        out.append(f"[{first}-{last}] [0-9]{{{rest}}}")
    if high[1:] != "9" * rest:  # high's own first digit, up to high's tail
        out += [f'"{high[0]}" {tail}' for tail in _digits_between("0" * rest, high[1:])]
    return out


# An unbounded integer has at most 16 digits, as in llama.cpp's own grammar for integers
# (without a limit a model can write zeros until it runs out of tokens).
MAX_INTEGER = 10 ** 16 - 1


def _naturals(low: int, high: int) -> list[str]:
    """GBNF sequences for the integers from `low` (at least 0) to `high`, written without
    leading zeros."""
    out = []
    if low == 0:
        out.append('"0"')
        low = 1
    if low > high:
        return out
    length, top = len(str(low)), len(str(high))
    for size in range(length, top + 1):
        start = str(low) if size == length else "1" + "0" * (size - 1)
        end = str(high) if size == top else "9" * size
        out += _digits_between(start, end)
    return out


def integer_grammar(low: int | None, high: int | None) -> str:
    """A GBNF body for the integers from `low` to `high`, within 16 digits either way (None:
    as far as that)."""
    low = -MAX_INTEGER if low is None else max(low, -MAX_INTEGER)
    high = MAX_INTEGER if high is None else min(high, MAX_INTEGER)
    alternatives = []
    if high >= 0:  # the integers at or above zero
        alternatives += _naturals(max(low, 0), high)
    if low < 0:  # the negative ones, as "-" and their magnitude
        alternatives += [f'"-" ({alt})' for alt in _naturals(max(-high, 1), -low)]
    return "(" + " | ".join(f"({alt})" for alt in alternatives) + ") space"


def _converter() -> Any:
    from llama_cpp import llama_grammar

    class Converter(llama_grammar.SchemaConverter):
        def visit(self, schema: dict[str, Any], name: str) -> str:
            if isinstance(schema, dict) and schema.get("type") == "integer" and "enum" not in schema \
                    and "const" not in schema and any(schema.get(key) is not None for key in INTEGER_BOUNDS):
                rule_name = name + "-" if name in llama_grammar.RESERVED_NAMES else name or "root"
                return self._add_rule(rule_name, integer_grammar(*integer_range(schema)))
            return super().visit(schema, name)

    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter._add_rule("space", llama_grammar.SPACE_RULE)
    return converter


# What llama.cpp is given to read: it reads a grammar recursively, one level of its stack
# per parenthesis, so a grammar nested deeper than this, or larger, is refused here rather
# than crash this process (schemas within contract/schemas.py's bounds stay far below).
MAX_GRAMMAR_BYTES = 8 * 1024 * 1024
MAX_GRAMMAR_NESTING = 4096


def nesting(grammar: str) -> int:
    """The deepest parenthesis nesting in GBNF text, outside its literals and classes."""
    depth = deepest = 0
    quote = None
    i = 0
    while i < len(grammar):
        char = grammar[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char == '"':
            quote = '"'
        elif char == "[":
            quote = "]"
        elif char == "#":
            end = grammar.find("\n", i)
            i = len(grammar) if end < 0 else end
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        i += 1
    return deepest


def _finish(converter: Any, body: str, what: str, param: str) -> str:
    converter._add_rule("root", '" "? ' + body)
    if "char" in converter._rules:
        converter._rules["char"] = _JSON_CHAR
    grammar = converter.format_grammar()
    if len(grammar) > MAX_GRAMMAR_BYTES or nesting(grammar) > MAX_GRAMMAR_NESTING:
        raise InvalidRequest(f"{what}: its grammar would be larger ({len(grammar):,} bytes) or nested deeper than "
                             f"this server builds ({MAX_GRAMMAR_BYTES:,} bytes, {MAX_GRAMMAR_NESTING:,} levels).",
                             param=param, code="schema_too_complex")
    return grammar


def _namespaced(schema: Any, prefix: str) -> Any:
    """The converter names a `$defs` entry's rule after its key alone, so two tools with a
    `$defs/Item` each would share one rule: each tool's keys get its own prefix."""
    def rename(node: Any) -> Any:
        if isinstance(node, list):
            return [rename(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for section in ("$defs", "definitions"):
                    head = f"#/{section}/"
                    if value.startswith(head):
                        value = head + prefix + value[len(head):]
                out[key] = value
            else:
                out[key] = rename(value)
        return out

    renamed = rename(schema)
    if isinstance(renamed, dict):
        for section in ("$defs", "definitions"):
            if isinstance(renamed.get(section), dict):
                renamed[section] = {prefix + k: v for k, v in renamed[section].items()}
    return renamed


def _visit(converter: Any, schema: dict[str, Any], name: str, what: str, param: str) -> str:
    try:
        resolved = converter.resolve_refs(_namespaced(copy.deepcopy(schema), f"{name}-"), name)
        return converter.visit(resolved, name)
    except (ValueError, AssertionError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise InvalidRequest(f"{what}: cannot be turned into a grammar: {exc}", param=param,
                             code="unsupported_schema") from None


def check_request(tools: Iterable[Tool], response_format: ResponseFormat | None) -> None:
    """Every declared tool's schema, then the response format's, can be enforced."""
    for tool in tools:
        check_enforceable(tool.parameters, f"Tool '{tool.name}' parameters", tool.param)
    if response_format is not None and response_format.type == "json_schema":
        check_enforceable(response_format.schema, f"response_format schema '{response_format.name}'",
                          "response_format.json_schema.schema")


def tools_grammar(use: ToolUse) -> str:
    converter = _converter()
    calls = []
    for i, tool in enumerate(use.tools):
        arguments = _visit(converter, tool.parameters, f"tool{i}-arguments", f"Tool '{tool.name}' parameters", "tools")
        name = converter._format_literal(json.dumps(tool.name))
        calls.append(converter._add_rule(
            f"tool{i}-call",
            r'"{" space "\"name\"" space ":" space ' + name + r' space "," space "\"arguments\"" space ":" space '
            + arguments + r' "}" space'))
    call = converter._add_rule("call", " | ".join(calls))
    body = f'"[" space {call} ("," space {call})* "]" space' if use.parallel else call
    return _finish(converter, body, "The tools' parameters", "tools")


def response_format_grammar(response_format: dict[str, Any]) -> str:
    """`response_format`: {"type": "json_object"} or {"type": "json_schema", "schema": ...}
    (one whose schema `check_request` accepted)."""
    schema = response_format.get("schema") if response_format["type"] == "json_schema" else {"type": "object"}
    converter = _converter()
    what, param = "response_format schema", "response_format.json_schema.schema"
    return _finish(converter, _visit(converter, schema, "response", what, param), what, param)


