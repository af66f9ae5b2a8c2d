"""The sampling parameters: one table of names, ranges and defaults, read by the request
schemas, the model-file schema and the sampler alike."""

from __future__ import annotations

from typing import Any

INT32_MAX = 2**31 - 1  # llama.cpp reads these counts as int32

# name -> (JSON Schema of its value, default when neither the request nor the YAML sets it).
# The defaults are llama.cpp's own.
SAMPLING: dict[str, tuple[dict[str, Any], Any]] = {
    "temperature": ({"type": "number", "minimum": 0, "maximum": 2}, 0.8),
    "top_p": ({"type": "number", "minimum": 0, "maximum": 1}, 0.95),
    "top_k": ({"type": "integer", "minimum": 0, "maximum": INT32_MAX}, 40),
    "min_p": ({"type": "number", "minimum": 0, "maximum": 1}, 0.05),
    "seed": ({"type": "integer"}, -1),
    "presence_penalty": ({"type": "number", "minimum": -2, "maximum": 2}, 0.0),
    "frequency_penalty": ({"type": "number", "minimum": -2, "maximum": 2}, 0.0),
    "repeat_penalty": ({"type": "number", "minimum": 0}, 1.0),
    # How many recent tokens the three penalties look at; 0 turns them off, -1 is the context.
    "repeat_last_n": ({"type": "integer", "minimum": -1, "maximum": INT32_MAX}, 64),
    "typical_p": ({"type": "number", "minimum": 0, "maximum": 1}, 1.0),
    # Mirostat (1, or 2 for Mirostat 2.0) replaces top-k, top-p, min-p, typical-p and XTC.
    "mirostat": ({"type": "integer", "minimum": 0, "maximum": 2}, 0),
    "mirostat_tau": ({"type": "number", "minimum": 0}, 5.0),
    "mirostat_eta": ({"type": "number", "minimum": 0}, 0.1),
    "top_n_sigma": ({"type": "number"}, -1.0),  # at most or below 0: off
    "xtc_probability": ({"type": "number", "minimum": 0, "maximum": 1}, 0.0),
    "xtc_threshold": ({"type": "number", "minimum": 0, "maximum": 1}, 0.1),
    "dry_multiplier": ({"type": "number", "minimum": 0}, 0.0),
    "dry_base": ({"type": "number", "minimum": 1}, 1.75),
    "dry_allowed_length": ({"type": "integer", "minimum": 0, "maximum": INT32_MAX}, 2),
    "dry_penalty_last_n": ({"type": "integer", "minimum": -1, "maximum": INT32_MAX}, -1),
    "dry_sequence_breakers": ({"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40},
                               "maxItems": 16}, ("\n", ":", "\"", "*")),
}
SAMPLING_KEYS = tuple(SAMPLING)
SAMPLING_DEFAULTS = {name: default for name, (_, default) in SAMPLING.items()}
MAX_TOKENS_SCHEMA = {"type": "integer", "minimum": 1}

# Samplers llama.cpp no longer has, with the one value that means "off", which files and
# clients written for older versions still send: any other value is refused.
REMOVED: dict[str, tuple[float, str]] = {
    "tfs_z": (1.0, "tail-free sampling was removed from llama.cpp"),
    "tfz": (1.0, "tail-free sampling (LocalAI's tfz) was removed from llama.cpp"),
}


def sampling_schemas(removed_off_only: bool = False) -> dict[str, dict[str, Any]]:
    """Each sampling field's schema, for a `properties` map.  A removed sampler's is any
    number (a request's is refused by `removed_problem`, naming why), or with
    `removed_off_only` (a model file's) its off value alone."""
    removed = {name: {"const": off} if removed_off_only else {"type": "number"} for name, (off, _) in REMOVED.items()}
    return {**{name: dict(schema) for name, (schema, _) in SAMPLING.items()}, **removed}


def removed_problem(values: dict[str, Any]) -> tuple[str, str] | None:
    """(field, why) for a removed sampler set to anything but off."""
    for name, (off, why) in REMOVED.items():
        value = values.get(name)
        if value is not None and value != off:
            return name, f"{why}; {off:g} (off) is the only value accepted"
    return None
