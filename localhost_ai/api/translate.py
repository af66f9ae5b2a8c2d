"""Other APIs' requests (OpenAI's Responses, Anthropic's Messages) are read into an OpenAI
chat body and served by the chat route's own code (api/chat.py): one path for templates,
tools, grammars, media and limits.  What is translated remembers where each part came
from, so an error names the client's own field (`input[2].content[0]`, not `messages[3]`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from localhost_ai.errors import APIError

# The chat body's paths and field names as errors write them in their text.
_IN_TEXT = re.compile(r"messages\[\d+\](?:\.content\[\d+\])?|tools\[\d+\]\.function\.parameters"
                      r"|\bresponse_format(?:\.json_schema\.schema)?\b|\bmax_tokens\b")


@dataclass
class Renames:
    """Chat-body paths (`messages[3]`, `tools[0].function`) -> the request's own."""

    paths: dict[str, str] = field(default_factory=dict)

    def add(self, chat: str, own: str) -> None:
        self.paths[chat] = own

    def path(self, chat: str) -> str:
        """`chat` in the request's terms: its longest known prefix replaced."""
        best = max((p for p in self.paths if chat == p or chat.startswith((p + ".", p + "["))), key=len, default=None)
        return chat if best is None else self.paths[best] + chat[len(best):]

    def apply(self, error: APIError) -> APIError:
        if error.param:
            error.param = self.path(error.param)
        error.message = _IN_TEXT.sub(lambda match: self.path(match.group(0)), error.message)
        error.args = (error.message,)
        return error


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    image: dict[str, Any] = {"url": url}
    if detail in ("auto", "low", "high"):
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def arguments_object(arguments: str | None) -> dict[str, Any]:
    """A call's arguments (JSON text, as the model wrote them) as the object Anthropic's
    `tool_use.input` and Ollama's `tool_calls` carry; {} for what is not a JSON object."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def function_tool(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}
