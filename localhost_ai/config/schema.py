"""JSON Schema of a model definition file (LocalAI's field names)."""

from __future__ import annotations

import re
from typing import Any

from localhost_ai.config.sampling import SAMPLING, sampling_schemas

_STRINGS = {"type": "array", "items": {"type": "string"}}
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([KkMmGgTt][Ii]?[Bb]?)?\s*$"
MIN_MEMORY_LIMIT = 1 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: int | str) -> int:
    """Bytes from 2147483648, '2GiB', '2G' or '1.5 GB' (binary units, as memory is counted)."""
    if isinstance(value, int):
        return value
    match = re.match(SIZE_PATTERN, value)
    if match is None:
        raise ValueError(f"not a size: {value!r} (use e.g. 512MiB or 2GiB)")
    number = float(value.strip().rstrip("BbIi").rstrip("KkMmGgTt").strip() or 0)
    unit = (match.group(2) or "")[:1].upper()
    return int(number * _UNITS[unit])
_STRING_OR_STRINGS = {"anyOf": [{"type": "string"}, _STRINGS]}


def model_schema(backends: list[str]) -> dict[str, Any]:
    """The fields every model has; `backends` are the names registered in localhost_ai.backends,
    each of which checks its own fields (`BackendOptions`) once the backend is known."""
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
                    **sampling_schemas(removed_off_only=True),
                    # LocalAI's 0 (and -1): no default budget, the rest of the context.
                    "max_tokens": {"type": "integer", "minimum": -1},
                },
            },
            # -1 (LocalAI's spelling, any negative): the GGUF's trained context.
            "context_size": {"anyOf": [{"type": "integer", "minimum": 16}, {"type": "integer", "maximum": -1}]},
            # LocalAI reads Mirostat's three at the top level: parameters.* win when both are set.
            **{name: dict(SAMPLING[name][0]) for name in ("mirostat", "mirostat_tau", "mirostat_eta")},
            "mmproj": {"type": "string", "minLength": 1},  # the multimodal projector GGUF
            "threads": {"type": "integer", "minimum": 1},
            # The most memory the model's worker may take (its data, not its mapped weights):
            # bytes, or a size such as 2GiB or 1.5G.
            "memory_limit": {"anyOf": [{"type": "integer", "minimum": MIN_MEMORY_LIMIT},
                                       {"type": "string", "pattern": SIZE_PATTERN}]},
            "mmlock": {"type": "boolean"},
            # With `serve --ray`: how many copies of the model serve it, and what each needs of a
            # node of the cluster (Ray's own names); without --ray, one local worker as always.
            "replicas": {"type": "integer", "minimum": 1, "maximum": 64},
            # Written by a gallery install: where each file came from, so a node that does not
            # share the models folder can fetch them (checked there again before any download,
            # gallery/mirror.py).
            "installed_from": {"type": "array", "maxItems": 64, "items": {
                "type": "object", "required": ["filename", "uri"], "additionalProperties": False,
                "properties": {"filename": {"type": "string", "minLength": 1, "maxLength": 1024},
                               "uri": {"type": "string", "minLength": 1, "maxLength": 4096},
                               "sha256": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}]},
                               # An archive's: each file it put in place, and that file's sha256.
                               "unpacked": {"type": "object", "maxProperties": 4096, "additionalProperties": {
                                   "type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}}}},
            "resources": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "num_cpus": {"type": "number", "minimum": 0, "maximum": 4096},
                    "num_gpus": {"type": "number", "minimum": 0, "maximum": 256},
                    "memory": {"anyOf": [{"type": "integer", "minimum": 0},
                                         {"type": "string", "pattern": SIZE_PATTERN}]},
                    "custom": {"type": "object", "maxProperties": 32,
                               "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$"},
                               "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9}},
                    "node_labels": {"type": "object", "maxProperties": 32,
                                    "propertyNames": {"pattern": r"^[A-Za-z0-9_.:/-]{1,128}$"},
                                    "additionalProperties": {"type": "string", "maxLength": 256}},
                },
            },
            "embeddings": {"type": "boolean"},
            "stopwords": _STRINGS,
            "system_prompt": {"type": "string"},
            "template": {
                "type": "object",
                "additionalProperties": True,
                "properties": {
                    "chat": {"type": "string"},
                    "chat_message": {"type": "string"},
                    "completion": {"type": "string"},
                    "edit": {"type": "string"},
                    "function": {"type": "string"},
                    "multimodal": {"type": "string"},
                    "join_chat_messages_by_character": {"type": ["string", "null"]},
                    "use_tokenizer_template": {"type": "boolean"},
                },
            },
            "roles": {"type": "object", "additionalProperties": {"type": "string"}},
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
            "disabled": {"type": "boolean"},
            "known_usecases": _STRING_OR_STRINGS,
        },
    }
