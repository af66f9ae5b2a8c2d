"""`tools`, `functions` and `response_format` on a chat request: read into one plain form
for the backend, with every schema checked here so that a bad one is a 400 naming it."""

from __future__ import annotations

from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from localhost_ai.errors import InvalidRequest

# Validation keywords a grammar cannot enforce: a schema that uses one would let the
# model produce values the schema refuses, so it is refused instead.
UNENFORCEABLE = frozenset({
    "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies",
    "patternProperties", "propertyNames", "minProperties", "maxProperties", "contains",
    "minContains", "maxContains", "uniqueItems", "multipleOf", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "unevaluatedProperties", "unevaluatedItems",
    "$dynamicRef", "$recursiveRef",
})
# Keywords whose values are schemas (or maps / lists of schemas) to look into.
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalProperties")


class _Dangling(Exception):
    pass


def _points_to(root: Any, ref: str) -> bool:
    target = root
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return True


def _unenforceable(schema: Any, path: str, root: Any) -> Iterator[str]:
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
    elif isinstance(ref, str) and not _points_to(root, ref):
        raise _Dangling(f"the $ref '{ref}' at {path} points to nothing in the schema")
    for key in _SUBSCHEMA_MAPS:
        for name, sub in (schema.get(key) or {}).items():
            yield from _unenforceable(sub, f"{path}.{key}.{name}", root)
    for key in _SUBSCHEMA_LISTS:
        for i, sub in enumerate(schema.get(key) or []):
            yield from _unenforceable(sub, f"{path}.{key}[{i}]", root)
    for key in _SUBSCHEMAS:
        yield from _unenforceable(schema.get(key), f"{path}.{key}", root)


# Keywords that only describe; a schema made of these alone allows any value.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
                          "writeOnly", "$schema", "$id"})
_ANY = ["string", "number", "boolean", "null", "object", "array"]


def _explicit(schema: Any) -> Any:
    """`true`, `{}` or a schema of annotations alone allow any value; the grammar converter
    reads them as objects only or not at all, so they are spelled out as every type."""
    if schema is True or (isinstance(schema, dict) and not set(schema) - _ANNOTATIONS):
        return {**(schema if isinstance(schema, dict) else {}), "type": list(_ANY)}
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: _explicit(v) for k, v in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_explicit(v) for v in out[key]]
    if "items" in out and out["items"] is not False:
        out["items"] = _explicit(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _explicit(out["additionalProperties"])
    return out


def check_schema(schema: dict[str, Any], what: str, param: str, object_root: bool, grammar: bool = True) -> dict[str, Any]:
    """The schema, once it is known to be valid JSON Schema that a grammar can enforce
    (that part only when `grammar`); a 400 naming it otherwise."""
    try:
        Draft202012Validator.check_schema(schema)
        problems = list(_unenforceable(schema, "the root", schema)) if grammar else []
    except SchemaError as exc:
        raise InvalidRequest(f"{what}: not a valid JSON Schema: {exc.message}", param=param,
                             code="invalid_schema") from None
    except _Dangling as exc:
        raise InvalidRequest(f"{what}: not a valid JSON Schema: {exc}", param=param, code="invalid_schema") from None
    except RecursionError:
        raise InvalidRequest(f"{what}: nested too deeply.", param=param, code="invalid_schema") from None
    if object_root and schema.get("type") != "object":
        raise InvalidRequest(f"{what}: must describe a JSON object (\"type\": \"object\" at its root).",
                             param=param, code="invalid_schema")
    if problems:
        raise InvalidRequest(
            f"{what}: uses {', '.join(problems[:5])}, which constrained decoding cannot enforce; "
            "remove it, or turn the model's grammar off (function.grammar.disable).",
            param=param, code="unsupported_schema")
    return _explicit(schema)


def _functions(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, bool]:
    """The declared functions, the request field they came from, and whether it is the legacy one."""
    if body.get("tools") and body.get("functions"):
        raise InvalidRequest("Send either 'tools' or the older 'functions', not both.", param="functions")
    if body.get("functions") or (body.get("function_call") is not None and not body.get("tools")):
        return list(body.get("functions") or []), "functions", True
    return [tool["function"] for tool in body.get("tools") or []], "tools", False


def _choice(body: dict[str, Any], legacy: bool, names: list[str]) -> str | dict[str, str]:
    raw = body.get("function_call") if legacy else body.get("tool_choice")
    param = "function_call" if legacy else "tool_choice"
    if raw is None:
        return "auto" if names else "none"
    if isinstance(raw, dict):
        name = raw["name"] if legacy else raw["function"]["name"]
        if name not in names:
            raise InvalidRequest(f"'{param}' names the function '{name}', which is not among the declared "
                                 f"functions ({', '.join(names) or 'none'}).", param=param)
        return {"name": name}
    if raw != "none" and not names:
        raise InvalidRequest(f"'{param}' is '{raw}' but no tools are given.", param=param)
    return raw


def tool_payload(body: dict[str, Any], grammar: bool = True) -> dict[str, Any]:
    """The backend's view of the request's functions and response format: {} when neither
    is asked.  `grammar`: the model constrains its output, so schemas must be enforceable."""
    functions, field, legacy = _functions(body)
    names = [f["name"] for f in functions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest(f"Function names must be unique; repeated: {', '.join(duplicates)}.", param=field)
    tools = []
    for i, function in enumerate(functions):
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        param = f"{field}[{i}].function.parameters" if field == "tools" else f"functions[{i}].parameters"
        parameters = check_schema(parameters, f"Tool '{function['name']}' parameters", param, True, grammar)
        tools.append({"name": function["name"], "description": function.get("description") or "",
                      "parameters": parameters})
    payload: dict[str, Any] = {}
    choice = _choice(body, legacy, names)
    if tools and choice != "none":
        payload["tools"] = tools
        payload["tool_choice"] = choice
        payload["parallel_tool_calls"] = False if legacy else body.get("parallel_tool_calls") is not False
        payload["legacy_functions"] = legacy
    response_format = body.get("response_format") or {"type": "text"}
    if response_format["type"] == "json_schema":
        spec = response_format.get("json_schema")
        if spec is None:
            raise InvalidRequest("A 'json_schema' response_format needs its 'json_schema' object "
                                 "({\"name\": ..., \"schema\": ...}).", param="response_format.json_schema")
        schema = spec.get("schema") or {"type": "object"}
        schema = check_schema(schema, f"response_format schema '{spec['name']}'", "response_format.json_schema.schema",
                              False, grammar)
        payload["response_format"] = {"type": "json_schema", "schema": schema}
    elif response_format["type"] == "json_object":
        payload["response_format"] = {"type": "json_object"}
    return payload
