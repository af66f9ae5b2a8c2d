"""JSON Schemas of the request bodies.  Unknown fields are ignored, as OpenAI-compatible
servers do, so clients that send vendor extras keep working; known fields are checked."""

from __future__ import annotations

from typing import Any

from localhost_ai.config.sampling import MAX_TOKENS_SCHEMA, sampling_schemas


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_nullable = nullable


MAX_N = 8
MAX_LOGIT_BIAS = 1024  # tokens one request may bias
MAX_LOGPROBS = 20  # alternatives reported per token (OpenAI's top_logprobs limit)

_STOP = _nullable({
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},  # how many: --max-stop-words (api/limits.py)
    ]
})

# The sampling values a request may set (temperature, top_p, top_k, min_p, seed, penalties).
SAMPLING_VALUES: dict[str, Any] = {key: _nullable(schema) for key, schema in sampling_schemas().items()}

SAMPLING: dict[str, Any] = {
    "model": _nullable({"type": "string"}),
    "max_tokens": _nullable(MAX_TOKENS_SCHEMA),
    "max_completion_tokens": _nullable(MAX_TOKENS_SCHEMA),
    "max_new_tokens": _nullable(MAX_TOKENS_SCHEMA),
    **SAMPLING_VALUES,
    "stop": _STOP,
    "stop_words": _STOP,
    "n": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_N}),
    "stream": _nullable({"type": "boolean"}),
    "stream_options": _nullable({
        "type": "object",
        "properties": {"include_usage": _nullable({"type": "boolean"})},
    }),
    # Ignored by design: who the end user is, and OpenAI's account-side knobs.
    "user": _nullable({"type": "string"}),
    "safety_identifier": _nullable({"type": "string"}),
    "metadata": _nullable({"type": "object", "additionalProperties": {"type": "string"}}),
    "store": _nullable({"type": "boolean"}),
    "service_tier": _nullable({"type": "string"}),
    "prompt_cache_key": _nullable({"type": "string"}),
    "prompt_cache_retention": _nullable({"type": "string"}),
    # Token ids (as strings: JSON's keys) to a bias added to their logits; -100 bans one.
    "logit_bias": _nullable({
        "type": "object",
        "propertyNames": {"pattern": "^(0|[1-9][0-9]{0,8})$"},
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
        "maxProperties": MAX_LOGIT_BIAS,
    }),
}

_TOKEN_ID = {"type": "integer", "minimum": 0}

_TEXT_PART = {"required": ["text"], "properties": {"text": {"type": "string"}}}
_IMAGE_PART = {
    "required": ["image_url"],
    "properties": {
        # OpenAI's object, or Nexa's bare string: a data URL, base64, an http(s) URL or a local file.
        "image_url": {"anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "required": ["url"],
             "properties": {"url": {"type": "string", "minLength": 1}, "detail": {"enum": ["auto", "low", "high"]}}},
        ]},
    },
}
AUDIO_FORMATS = ["wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "webm", "mp4"]
_AUDIO_PART = {
    "required": ["input_audio"],
    "properties": {
        "input_audio": {"anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "required": ["data"],
             "properties": {"data": {"type": "string", "minLength": 1}, "format": {"enum": AUDIO_FORMATS}}},
        ]},
    },
}
# Each part is checked against the shape its `type` names, so an error names the field at fault.
_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["text", "image_url", "input_audio"]}},
    "allOf": [
        {"if": {"properties": {"type": {"const": kind}}}, "then": shape}
        for kind, shape in (("text", _TEXT_PART), ("image_url", _IMAGE_PART), ("input_audio", _AUDIO_PART))
    ],
}

_CONTENT = _nullable({"anyOf": [{"type": "string"}, {"type": "array", "items": _PART}]})

# OpenAI's rule for function names.
FUNCTION_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}

_TOOL_CALL = {
    "type": "object",
    "required": ["function"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
        },
    },
}

MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": _CONTENT,
        "name": {"type": "string"},
        "tool_calls": _nullable({"type": "array", "items": _TOOL_CALL}),
        "function_call": _nullable(_TOOL_CALL["properties"]["function"]),
        "tool_call_id": {"type": "string"},
    },
    "allOf": [
        {"if": {"required": ["role"], "properties": {"role": {"const": "tool"}}}, "then": {"required": ["tool_call_id"]}},
        {"if": {"required": ["role"], "properties": {"role": {"const": "function"}}}, "then": {"required": ["name"]}},
    ],
}

FUNCTION = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": FUNCTION_NAME,
        "description": {"type": "string"},
        "parameters": {"type": "object"},
        "strict": _nullable({"type": "boolean"}),
    },
}

TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {"type": {"const": "function"}, "function": FUNCTION},
}

_NAMED = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}

TOOL_FIELDS: dict[str, Any] = {
    "tools": _nullable({"type": "array", "items": TOOL}),  # how many: --max-tools
    "tool_choice": _nullable({
        "anyOf": [
            {"enum": ["none", "auto", "required"]},
            {"type": "object", "required": ["type", "function"],
             "properties": {"type": {"const": "function"}, "function": _NAMED}},
        ]
    }),
    "parallel_tool_calls": _nullable({"type": "boolean"}),
    "functions": _nullable({"type": "array", "items": FUNCTION}),
    "function_call": _nullable({"anyOf": [{"enum": ["none", "auto"]}, _NAMED]}),
    "response_format": _nullable({
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"enum": ["text", "json_object", "json_schema"]},
            "json_schema": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": FUNCTION_NAME,
                    "description": {"type": "string"},
                    "schema": {"type": "object"},
                    "strict": _nullable({"type": "boolean"}),
                },
            },
        },
    }),
}

COMPLETION = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        **SAMPLING,
        # A text, several texts, token ids, or several lists of token ids (OpenAI's four shapes).
        "prompt": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_N},
                {"type": "array", "items": _TOKEN_ID, "minItems": 1},
                {"type": "array", "items": {"type": "array", "items": _TOKEN_ID, "minItems": 1},
                 "minItems": 1, "maxItems": MAX_N},
            ]
        },
        # 0 scores the prompt alone, with echo (the log-likelihood evaluation tools ask for).
        "max_tokens": _nullable({**MAX_TOKENS_SCHEMA, "minimum": 0}),
        "echo": _nullable({"type": "boolean"}),
        "logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_LOGPROBS}),
        "suffix": {"type": "null"},
        "best_of": _nullable({"type": "integer", "minimum": 1, "maximum": 1}),
    },
}

CHAT = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        **SAMPLING,
        **TOOL_FIELDS,
        "messages": {"type": "array", "items": MESSAGE, "minItems": 1},
        "logprobs": _nullable({"type": "boolean"}),
        "top_logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_LOGPROBS}),
        "modalities": _nullable({"type": "array", "items": {"enum": ["text", "audio"]}}),
    },
}

# OpenAI's chat fields this server does not act on, refused when set (api/chat.py says why).
UNSERVED_CHAT_FIELDS = {
    "audio": "answers are text; speech is POST /v1/audio/speech",
    "prediction": "predicted outputs are not served",
    "web_search_options": "there is no web search here",
    "reasoning_effort": "no model here is served with a reasoning budget",
    "verbosity": "no model here is served with a verbosity setting",
}

# Nexa's /v1/function-calling: a chat request whose tools are required.
FUNCTION_CALLING = {**CHAT, "required": ["messages", "tools"]}

EDIT = {
    "type": "object",
    "required": ["instruction"],
    "properties": {
        **SAMPLING,
        "instruction": {"type": "string", "minLength": 1},
        "input": _nullable({"type": "string"}),
    },
}
