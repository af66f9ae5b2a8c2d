"""`tools`, `functions` and `response_format` on an OpenAI chat request, read into the
contract's types with every schema checked here, so that a bad one is a 400 naming it.
Whether a model's grammar can enforce a schema is the model's to say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from localhost_ai.contract.generate import ResponseFormat, Tool
from localhost_ai.contract.schemas import explicit, points_to, subschemas
from localhost_ai.errors import InvalidRequest


def _dangling(schema: Any, path: str, root: Any) -> str | None:
    """The first local `$ref` that points to nothing in the schema."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and not points_to(root, ref):
            return f"the $ref '{ref}' at {path} points to nothing in the schema"
    for sub, sub_path in subschemas(schema, path):
        found = _dangling(sub, sub_path, root)
        if found:
            return found
    return None


def check_schema(schema: dict[str, Any], what: str, param: str, object_root: bool) -> dict[str, Any]:
    """The schema in its canonical form, once it is known to be valid JSON Schema; a 400
    naming it otherwise."""
    try:
        Draft202012Validator.check_schema(schema)
        dangling = _dangling(schema, "the root", schema)
    except SchemaError as exc:
        raise InvalidRequest(f"{what}: not a valid JSON Schema: {exc.message}", param=param,
                             code="invalid_schema") from None
    except RecursionError:
        raise InvalidRequest(f"{what}: nested too deeply.", param=param, code="invalid_schema") from None
    if dangling:
        raise InvalidRequest(f"{what}: not a valid JSON Schema: {dangling}", param=param, code="invalid_schema")
    if object_root and schema.get("type") != "object":
        raise InvalidRequest(f"{what}: must describe a JSON object (\"type\": \"object\" at its root).",
                             param=param, code="invalid_schema")
    return explicit(schema)


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


@dataclass(frozen=True)
class ToolFields:
    """The request's tools as the contract carries them; `legacy`: they came as the older
    `functions` (answered with `function_call`)."""

    tools: tuple[Tool, ...] = ()
    tool_choice: Literal["auto", "required", "none"] = "auto"
    forced_tool: str | None = None
    parallel: bool = True
    legacy: bool = False
    response_format: ResponseFormat | None = None


def tool_fields(body: dict[str, Any]) -> ToolFields:
    """The request's functions (declared ones even under tool_choice "none": the model
    still checks what it is given) and response format."""
    functions, field, legacy = _functions(body)
    names = [f["name"] for f in functions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest(f"Function names must be unique; repeated: {', '.join(duplicates)}.", param=field)
    tools = []
    for i, function in enumerate(functions):
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        param = f"{field}[{i}].function.parameters" if field == "tools" else f"functions[{i}].parameters"
        parameters = check_schema(parameters, f"Tool '{function['name']}' parameters", param, True)
        tools.append(Tool(function["name"], function.get("description") or "", parameters, param))
    choice = _choice(body, legacy, names)
    response_format = None
    requested = body.get("response_format") or {"type": "text"}
    if requested["type"] == "json_schema":
        spec = requested.get("json_schema")
        if spec is None:
            raise InvalidRequest("A 'json_schema' response_format needs its 'json_schema' object "
                                 "({\"name\": ..., \"schema\": ...}).", param="response_format.json_schema")
        schema = check_schema(spec.get("schema") or {"type": "object"}, f"response_format schema '{spec['name']}'",
                              "response_format.json_schema.schema", False)
        response_format = ResponseFormat("json_schema", schema, spec["name"])
    elif requested["type"] == "json_object":
        response_format = ResponseFormat("json_object")
    if not tools:
        return ToolFields(legacy=legacy, response_format=response_format)
    forced = choice["name"] if isinstance(choice, dict) else None
    return ToolFields(tuple(tools), "auto" if forced else choice, forced,
                      parallel=False if legacy else body.get("parallel_tool_calls") is not False,
                      legacy=legacy, response_format=response_format)
