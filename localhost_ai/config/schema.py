"""JSON Schema of a model definition file (LocalAI's field names)."""

from __future__ import annotations

from typing import Any

_NUMBER = {"type": "number"}
_INT = {"type": "integer"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_STRING_OR_STRINGS = {"anyOf": [{"type": "string"}, _STRINGS]}


def model_schema(backends: list[str]) -> dict[str, Any]:
    """The schema; `backends` are the names registered in localhost_ai.backends."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "localhost_ai model definition",
        "type": "object",
        # LocalAI's files carry fields this server does not use (f16, gpu_layers ...):
        # they are accepted so those files load here unchanged.
        "additionalProperties": True,
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:@+\-/]{0,127}$"},
            "backend": {"enum": backends},
            "parameters": {
                "type": "object",
                "additionalProperties": True,
                "properties": {
                    "model": {"type": "string", "minLength": 1},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                    "top_k": {"type": "integer", "minimum": 0},
                    "min_p": {"type": "number", "minimum": 0, "maximum": 1},
                    "max_tokens": {"type": "integer", "minimum": 1},
                    "seed": _INT,
                    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                    "repeat_penalty": {"type": "number", "minimum": 0},
                },
            },
            "context_size": {"type": "integer", "minimum": 16},
            "threads": {"type": "integer", "minimum": 1},
            "mmap": {"type": "boolean"},
            "mmlock": {"type": "boolean"},
            "embeddings": {"type": "boolean"},
            "parallel": {"type": "integer", "minimum": 1, "maximum": 64},
            "prefill_chunk": {"type": "integer", "minimum": 16, "maximum": 4096},
            "stopwords": _STRINGS,
            "system_prompt": {"type": "string"},
            "template": {
                "type": "object",
                "additionalProperties": True,
                "properties": {
                    "chat": {"type": "string"},
                    "completion": {"type": "string"},
                    "edit": {"type": "string"},
                    "function": {"type": "string"},
                },
            },
            "function": {
                "type": "object",
                "additionalProperties": True,
                "properties": {
                    "disable_no_action": {"type": "boolean"},
                    "no_action_function_name": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
                    "no_action_description_name": {"type": "string"},
                    "prompt": {"type": "string"},
                    "grammar": {
                        "type": "object",
                        "additionalProperties": True,
                        "properties": {"disable": {"type": "boolean"}, "parallel_calls": {"type": "boolean"}},
                    },
                    "response_regex": _STRINGS,
                    "function_name_key": {"type": "string"},
                    "function_arguments_key": {"type": "string"},
                },
            },
            "description": {"type": "string"},
            "usage": {"type": "string"},
            "known_usecases": _STRING_OR_STRINGS,
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 4096},
            "batch_wait_ms": {"type": "number", "minimum": 0, "maximum": 1000},
            "matryoshka": {"type": "boolean"},
        },
    }
