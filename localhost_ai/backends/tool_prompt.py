"""How a chat request's tools reach a text model: the YAML's `function:` settings, the
tools one request may call, and the prompt that tells the model about them (through a
chat template that knows tools, or as plain instructions)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from localhost_ai.config import ModelConfig
from localhost_ai.config.templates import PromptTemplateError, render
from localhost_ai.contract.generate import ChatRequest, Tool
from localhost_ai.errors import InvalidRequest

NO_ACTION_NAME = "answer"
NO_ACTION_DESCRIPTION = "use this action to answer without performing any action"

DEFAULT_TOOLS_PROMPT = """\
You can call these functions:
{% for tool in tools %}
- {{ tool.name }}{% if tool.description %}: {{ tool.description }}{% endif %}

  arguments (JSON Schema): {{ tool.parameters | tojson }}
{% endfor %}

To call a function, reply with a JSON object that names it and gives its arguments, \
such as {"name": "{{ tools[0].name }}", "arguments": {...}}.
{% if parallel %}
To call several functions at once, reply with a JSON list of such objects.
{% endif %}
{% if no_action %}
To reply in words instead, call "{{ no_action }}" with your reply as its "message" argument.
{% endif %}"""


@dataclass
class FunctionSettings:
    """The YAML's `function:` section (LocalAI's names)."""

    grammar: bool = True
    no_action: str | None = NO_ACTION_NAME
    no_action_description: str = NO_ACTION_DESCRIPTION
    # As in LocalAI, a model writes a list of calls only where its YAML allows it: small
    # models given the choice tend to repeat a call until they run out of tokens.
    parallel_calls: bool = False
    prompt: str = DEFAULT_TOOLS_PROMPT
    response_regex: tuple[str, ...] = ()
    name_key: str = "name"
    arguments_key: str = "arguments"

    @classmethod
    def from_config(cls, config: ModelConfig) -> "FunctionSettings":
        section = config.function
        grammar = section.get("grammar") or {}
        return cls(
            grammar=not grammar.get("disable", False),
            no_action=None if section.get("disable_no_action") else section.get("no_action_function_name") or NO_ACTION_NAME,
            no_action_description=section.get("no_action_description_name") or NO_ACTION_DESCRIPTION,
            parallel_calls=grammar.get("parallel_calls", False),
            prompt=section.get("prompt") or DEFAULT_TOOLS_PROMPT,
            response_regex=tuple(section.get("response_regex") or ()),
            name_key=section.get("function_name_key") or "name",
            arguments_key=section.get("function_arguments_key") or "arguments",
        )


@dataclass
class ToolUse:
    """What one chat request asks of its tools, settled against the model's settings."""

    tools: list[Tool]  # those the model may call, the no-action one included
    parallel: bool
    no_action: str | None

    @classmethod
    def from_request(cls, request: ChatRequest, settings: FunctionSettings) -> "ToolUse | None":
        if not request.offers_tools:
            return None
        tools = list(request.tools)
        if request.forced_tool is not None:
            tools = [t for t in tools if t.name == request.forced_tool]
        no_action = None
        if request.forced_tool is None and request.tool_choice == "auto" and settings.no_action:
            names = {t.name for t in tools}
            no_action = settings.no_action
            while no_action in names:  # a declared tool may already have the name
                no_action += "_"
            tools.append(Tool(
                name=no_action,
                description=settings.no_action_description,
                parameters={"type": "object", "properties": {"message": {
                    "type": "string", "description": "The message to reply to the user with"}},
                    "required": ["message"]},
            ))
        parallel = request.parallel_tool_calls and settings.parallel_calls
        return cls(tools, parallel, no_action)

    def as_dicts(self, include_no_action: bool = True) -> list[dict[str, Any]]:
        """The tools as templates read them."""
        return [{"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in self.tools if include_no_action or t.name != self.no_action]


def template_knows_tools(template: str) -> bool:
    return "tools" in template


def openai_tools(use: ToolUse) -> list[dict[str, Any]]:
    """The tools as chat templates written for Hugging Face expect them."""
    return [{"type": "function", "function": t} for t in use.as_dicts()]


def _call_text(calls: list[dict[str, Any]]) -> str:
    """Calls a client sends back, written as the grammar makes the model write them."""
    written = [{"name": c.get("name", ""), "arguments": _parsed(c.get("arguments"))} for c in calls]
    return json.dumps(written[0] if len(written) == 1 else written, ensure_ascii=False)


def _parsed(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments if arguments is not None else {}


def _calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = [c.get("function") or {} for c in message.get("tool_calls") or []]
    if message.get("function_call"):
        calls.append(message["function_call"])
    return calls


def messages_for_template(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a template that knows tools: OpenAI's current shape (legacy `function_call` and
    `role: function` turned into tool calls and results), absent fields left out rather
    than null, and arguments as objects, as Hugging Face templates expect."""
    out = []
    for message in messages:
        message = {k: v for k, v in message.items() if v is not None}
        calls = list(message.pop("tool_calls", None) or [])
        legacy = message.pop("function_call", None)
        if legacy:
            calls.append({"id": f"call_{legacy.get('name', '')}", "type": "function", "function": legacy})
        if calls:
            message["tool_calls"] = [{**c, "type": "function", "function": {
                **(c.get("function") or {}), "arguments": _parsed((c.get("function") or {}).get("arguments"))}}
                for c in calls]
        if message["role"] == "function":
            message = {**message, "role": "tool", "tool_call_id": f"call_{message.get('name', '')}"}
        out.append(message)
    return out


def messages_in_plain_text(messages: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """For a template that knows only system/user/assistant: the tool instructions join
    the system message, calls become the assistant's JSON, and results a user turn."""
    names = {c.get("id"): (c.get("function") or {}).get("name") for m in messages for c in m.get("tool_calls") or []}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role in ("tool", "function"):
            name = message.get("name") or names.get(message.get("tool_call_id")) or "the function"
            line = f"Result of {name}: {message.get('content', '')}"
            if out and out[-1].get("_results"):
                out[-1]["content"] += "\n" + line
            else:
                out.append({"role": "user", "content": line, "_results": True})
            continue
        calls = _calls_of(message) if role == "assistant" else []
        if calls:
            text = message.get("content") or ""
            message = {"role": "assistant", "content": (text + "\n" if text else "") + _call_text(calls)}
        out.append({k: v for k, v in message.items() if k not in ("tool_calls", "function_call")})
    out = [{k: v for k, v in m.items() if k != "_results"} for m in out]
    if instructions:
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": instructions + "\n\n" + out[0]["content"]}
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out


def instructions(use: ToolUse, settings: FunctionSettings, model: str) -> str:
    tools = use.as_dicts(include_no_action=False)
    try:
        return render(settings.prompt, tools=tools, parallel=use.parallel, no_action=use.no_action).strip()
    except PromptTemplateError as exc:
        raise InvalidRequest(f"Model '{model}': function prompt template: {exc}", code="template_error") from None
