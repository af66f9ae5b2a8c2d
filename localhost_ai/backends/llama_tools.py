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


def _unenforceable(schema: Any, path: str) -> Iterator[str]:
    if schema is False and not path.endswith((".additionalProperties", ".items")):
        yield f"a false schema (no value is valid) at {path}"
    if not isinstance(schema, dict):
        return
    for key in schema:
        if key in UNENFORCEABLE:
            yield f"'{key}' at {path}"
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


def _converter() -> Any:
    from llama_cpp import llama_grammar

    converter = llama_grammar.SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
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


