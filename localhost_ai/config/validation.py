"""The first problem a JSON Schema finds in a document, with the place it is at: one
helper for request bodies, model files and gallery entries alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match


@dataclass(frozen=True)
class SchemaProblem:
    where: str | None  # `messages[0].content`, None for the document itself
    message: str
    error: ValidationError


def place(path: Sequence[Any]) -> str | None:
    """A path as a client names a field: `tools[0].function.name`."""
    if not path:
        return None
    out = str(path[0])
    for part in path[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def first_problem(validator: Draft202012Validator, document: Any, in_order: bool = False) -> SchemaProblem | None:
    """The most relevant error (jsonschema's `best_match`), or with `in_order` the one
    earliest in the document, so that a file's first mistake is the one reported."""
    errors = validator.iter_errors(document)
    if in_order:
        error = min(errors, key=lambda e: [str(p) for p in e.absolute_path], default=None)
    else:
        error = best_match(errors)
    if error is None:
        return None
    return SchemaProblem(place(list(error.absolute_path)), error.message, error)
