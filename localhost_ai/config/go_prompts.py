"""Prompts from LocalAI's Go templates, assembled the way LocalAI assembles them
(core/templates/evaluator.go, TemplateMessages): each message through `chat_message` (or
LocalAI's role-prefix fallback), joined, then `chat` (or `function` when tools are offered)
with `.Input`; `completion` and `edit` with `.Input` and `.Instruction`. Also: which syntax a
model file's template is written in, Go's or Jinja's."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from localhost_ai.config.gotemplate import (GoStruct, GoTemplate, NilDict, NilList, NilStringMap, StringMap,
                                            TemplateError, TemplateSyntaxError)
from localhost_ai.config.gotemplate.values import to_json
from localhost_ai.config.templates import PromptTemplateError, compile_template

log = logging.getLogger(__name__)

GO, JINJA = "go", "jinja"
# The no-action function's parameters as LocalAI lists them in `.Functions`
# (core/http/endpoints/openai/chat.go, noActionGrammar): no "type", as LocalAI writes them.
LOCALAI_NO_ACTION_PARAMETERS = {"properties": {
    "message": {"type": "string", "description": "The message to reply the user with"}}}
# What only Go's syntax writes: `{{.Field}}`, `{{$var}}`, `{{if ...}}`, `{{end}}`, `{{/* */}}` ...
_GO_HINT = re.compile(r"\{\{-?\s*(?:\.|\$|/\*|(?:if|range|with|else|end|define|template|block)\b)")


@lru_cache(maxsize=512)
def go_template(source: str) -> GoTemplate:
    return GoTemplate(source)


def template_syntax(source: str) -> str:
    """GO or JINJA for one template, told by parsing it both ways; a template that is
    neither raises (TemplateSyntaxError with its line and column when it reads as Go)."""
    go_error: TemplateSyntaxError | None = None
    jinja_error: PromptTemplateError | None = None
    try:
        go_template(source)
    except TemplateSyntaxError as exc:
        go_error = exc
    try:
        compile_template(source)
    except PromptTemplateError as exc:
        jinja_error = exc
    if go_error is None and jinja_error is None:  # plain text, or `{{ x }}` both read alike
        return GO if _GO_HINT.search(source) and "{%" not in source else JINJA
    if go_error is None:
        return GO
    if jinja_error is None:
        return JINJA
    raise go_error if _GO_HINT.search(source) else jinja_error


def syntax_of(kind: str, source: str) -> str:
    """A model file's `template.<kind>`'s syntax: `chat_message` and `multimodal`, LocalAI's
    own notions, are Go's only; the others are told by template_syntax. Raises as that does."""
    if kind in ("chat_message", "multimodal"):
        go_template(source)
        return GO
    return template_syntax(source)


# -- LocalAI's template data -------------------------------------------------------------------

_FUNCTION_TAGS = {"Name": "name", "Description": "description", "Strict": "strict", "Parameters": "parameters"}
_CALL_TAGS = {"Name": "name,omitempty", "Arguments": "arguments"}
_TOOL_CALL_TAGS = {"Index": "index", "ID": "id", "Type": "type", "FunctionCall": "function"}


def _go_json(value: Any) -> Any:
    """A value as encoding/json decodes it into interface{}: numbers are float64."""
    return json.loads(json.dumps(value), parse_int=float)


def go_function(tool: dict[str, Any]) -> GoStruct:
    """A tool as LocalAI's functions.Function."""
    parameters = tool.get("parameters")
    return GoStruct("Function", {
        "Name": tool.get("name", ""), "Description": tool.get("description") or "", "Strict": bool(tool.get("strict")),
        "Parameters": _go_json(parameters) if isinstance(parameters, dict) else NilDict()}, _FUNCTION_TAGS)


def go_tool_call(call: dict[str, Any]) -> GoStruct:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    return GoStruct("ToolCall", {
        # Index as LocalAI decodes it from the request: 0 unless the client sent one.
        "Index": call.get("index", 0), "ID": call.get("id") or "", "Type": call.get("type") or "function",
        "FunctionCall": GoStruct("FunctionCall", {
            "Name": function.get("name") or "",
            "Arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {}, separators=(",", ":"))},
            _CALL_TAGS)}, _TOOL_CALL_TAGS)


def prompt_data(*, input: str = "", instruction: str = "", system_prompt: str = "", suppress_system_prompt: bool = False,
                functions: list[dict[str, Any]] | None = None, reasoning_effort: str = "",
                metadata: dict[str, str] | None = None) -> GoStruct:
    """LocalAI's PromptTemplateData (MessageIndex is never set for a prompt)."""
    return GoStruct("PromptTemplateData", {
        "SystemPrompt": system_prompt, "SuppressSystemPrompt": suppress_system_prompt, "Input": input,
        "Instruction": instruction,
        "Functions": NilList() if functions is None else [go_function(f) for f in functions],
        "MessageIndex": 0, "ReasoningEffort": reasoning_effort,
        "Metadata": StringMap(metadata) if metadata is not None else NilStringMap()})


@dataclass(frozen=True)
class GoPrompts:
    """A model's Go templates and the settings LocalAI assembles a chat with."""

    chat: str | None = None
    chat_message: str | None = None
    function: str | None = None
    roles: dict[str, str] = field(default_factory=dict)
    join: str | None = None  # template.join_chat_messages_by_character; None: "\n"
    system_prompt: str = ""

    def chat_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                    use_function: bool = False, grammar: bool = False, reasoning_effort: str = "",
                    metadata: dict[str, str] | None = None) -> str:
        """LocalAI's TemplateMessages over messages shaped as chat templates read them
        (`role`, `content`, `name`, `tool_calls`, and the legacy `function_call`)."""
        parts: list[str] = []
        suppress = False
        for index, message in enumerate(messages):
            role = message.get("role") or ""
            calls = message.get("tool_calls")
            legacy = message.get("function_call")
            if (legacy is not None or calls is not None) and role == "assistant" and self.roles.get("assistant_function_call"):
                role = "assistant_function_call"
            prefix = self.roles.get(role, "")
            text = message.get("content") if isinstance(message.get("content"), str) else ""
            function_call: Any = _go_json(legacy) if isinstance(legacy, dict) else None
            if calls:
                function_call = [go_tool_call(c) for c in calls]
            content = ""
            if self.chat_message:
                data = GoStruct("ChatMessageTemplateData", {
                    "SystemPrompt": self.system_prompt, "Role": prefix, "RoleName": role,
                    "FunctionName": message.get("name") or "", "Content": text, "MessageIndex": index,
                    "Function": grammar and index == len(messages) - 1, "FunctionCall": function_call,
                    "LastMessage": index == len(messages) - 1})
                try:
                    content = go_template(self.chat_message).render(data)
                except TemplateError as exc:
                    log.warning("template.chat_message failed on message %d (%s); LocalAI's plain format is used",
                                index, exc)
                else:
                    if content == "":
                        continue  # LocalAI leaves a message its template renders empty out, separator and all
            if content == "":
                content, system_shown = _plain(prefix, text, legacy, calls, role)
                suppress = suppress or system_shown
            parts.append(content)
        joined = ("\n" if self.join is None else self.join).join(parts)
        template = self.function if (self.function and use_function) else self.chat
        if not template:
            return joined
        data = prompt_data(input=joined, system_prompt=self.system_prompt, suppress_system_prompt=suppress,
                           functions=tools, reasoning_effort=reasoning_effort, metadata=metadata)
        try:
            return go_template(template).render(data)
        except TemplateError as exc:
            log.warning("the chat template failed (%s); the messages are sent as they are, as LocalAI does", exc)
            return joined


def _plain(prefix: str, text: str, legacy: Any, calls: Any, role: str) -> tuple[str, bool]:
    """LocalAI's message format without a template: the role's prefix, then the content;
    calls as JSON after it (on their own line when there is content)."""
    content = prefix + text if text else ""
    for call in (legacy, calls):
        if call is None:
            continue
        encoded = _marshal(call)
        shown = f"{prefix} {encoded}" if prefix else encoded
        content = content + "\n" + shown if text else shown
    return content, bool(text) and role == "system"


def _marshal(value: Any) -> str:
    if isinstance(value, list):
        return to_json([go_tool_call(c) for c in value])
    return to_json(_go_json(value))


# -- template.multimodal ------------------------------------------------------------------------

# LocalAI's sentinel for one image or audio item, and its template when a file has none
# (core/templates/multimodal.go): each message's audio markers, then its image markers, then
# its text.
MEDIA_SENTINEL = "<__media__>"
DEFAULT_MULTIMODAL = ("{{ range .Audio }}<__media__>{{end}}{{ range .Images }}<__media__>{{end}}"
                      "{{ range .Video }}[vid-{{.ID}}]{{end}}{{.Text}}")


@dataclass(frozen=True)
class MultimodalMessage:
    content: str  # the message's text with `marker` where each of `media` goes
    media: tuple[Any, ...]  # its image and audio parts, in the order their markers appear


def multimodal_content(source: str | None, text: str, images: list[Any], audios: list[Any], images_before: int,
                       audios_before: int, marker: str) -> MultimodalMessage:
    """A message's content as LocalAI writes one that has images or audio: its text parts
    joined, through `template.multimodal` (`.Images`, `.Audio`, `.Video` with their `.ID`
    across the chat, and `.Text`). Only the markers the template writes become media markers,
    never one in the text. A template that fails, changes the text, or writes other than one
    marker per item gives way to LocalAI's default, with a warning."""
    if source:
        try:
            return _multimodal(source, text, images, audios, images_before, audios_before, marker)
        except (TemplateError, ValueError) as exc:
            log.warning("template.multimodal: %s; LocalAI's default placement is used", exc)
    return _multimodal(DEFAULT_MULTIMODAL, text, images, audios, images_before, audios_before, marker)


def _multimodal(source: str, text: str, images: list[Any], audios: list[Any], images_before: int,
                audios_before: int, marker: str) -> MultimodalMessage:
    stand_in = f"\x00text-{id(text):x}\x00"  # where the text goes: its own markers stay text
    data = GoStruct("MultimodalData", {
        "Audio": [GoStruct("MultimodalContent", {"ID": audios_before + i}) for i in range(len(audios))],
        "Images": [GoStruct("MultimodalContent", {"ID": images_before + i}) for i in range(len(images))],
        "Video": [],
        "Text": stand_in,
    })
    out = go_template(source).render(data)
    if out.count(stand_in) != 1:
        raise ValueError("it does not write .Text once, unchanged")
    if out.count(MEDIA_SENTINEL) != len(images) + len(audios):
        raise ValueError(f"it writes {out.count(MEDIA_SENTINEL)} {MEDIA_SENTINEL} markers for "
                         f"{len(images) + len(audios)} images and audio")
    # The markers stand for the items in the order the template ranges over them.
    audio_first = source.find(".Audio") != -1 and (source.find(".Images") == -1
                                                   or source.find(".Audio") < source.find(".Images"))
    media = tuple(audios + images if audio_first else images + audios)
    return MultimodalMessage(out.replace(MEDIA_SENTINEL, marker).replace(stand_in, text), media)
