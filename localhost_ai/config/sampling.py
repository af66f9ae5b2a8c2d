"""The sampling parameters: one table of names, ranges and defaults, read by the request
schemas, the model-file schema and the sampler alike."""

from __future__ import annotations

from typing import Any

# name -> (JSON Schema of its value, default when neither the request nor the YAML sets it).
# The defaults are llama.cpp's own.
SAMPLING: dict[str, tuple[dict[str, Any], Any]] = {
    "temperature": ({"type": "number", "minimum": 0, "maximum": 2}, 0.8),
    "top_p": ({"type": "number", "minimum": 0, "maximum": 1}, 0.95),
    "top_k": ({"type": "integer", "minimum": 0}, 40),
    "min_p": ({"type": "number", "minimum": 0, "maximum": 1}, 0.05),
    "seed": ({"type": "integer"}, -1),
    "presence_penalty": ({"type": "number", "minimum": -2, "maximum": 2}, 0.0),
    "frequency_penalty": ({"type": "number", "minimum": -2, "maximum": 2}, 0.0),
    "repeat_penalty": ({"type": "number", "minimum": 0}, 1.0),
}
SAMPLING_KEYS = tuple(SAMPLING)
SAMPLING_DEFAULTS = {name: default for name, (_, default) in SAMPLING.items()}
MAX_TOKENS_SCHEMA = {"type": "integer", "minimum": 1}


def sampling_schemas() -> dict[str, dict[str, Any]]:
    """Each sampling field's schema, for a `properties` map."""
    return {name: dict(schema) for name, (schema, _) in SAMPLING.items()}
