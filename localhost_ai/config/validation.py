"""The first problem a JSON Schema finds in a document, with the place it is at: one
helper for request bodies, model files and gallery entries alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match


@dataclass(frozen=True)
class SchemaProblem:
    where: str | None  # `messages[0].content`, None for the document itself
    message: str
    error: ValidationError

    @property
    def dotted(self) -> str | None:
        """The place as a model file names its fields: `stopwords.1`."""
        return ".".join(str(p) for p in self.error.absolute_path) or None


def place(path: Sequence[Any]) -> str | None:
    """A path as a client names a field: `tools[0].function.name`."""
    if not path:
        return None
    out = str(path[0])
    for part in path[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def earliest(errors: Iterable[ValidationError]) -> ValidationError | None:
    """The error earliest in the document, so that a file's first mistake is the one named."""
    return next(iter(sorted(errors, key=lambda e: list(e.absolute_path))), None)


def first_found(errors: Iterable[ValidationError]) -> ValidationError | None:
    return next(iter(errors), None)


def first_problem(validator: Draft202012Validator, document: Any,
                  pick: Callable[[Iterable[ValidationError]], ValidationError | None] = best_match) -> SchemaProblem | None:
    """The problem `pick` chooses among the validator's errors: jsonschema's most relevant
    one by default."""
    error = pick(validator.iter_errors(document))
    if error is None:
        return None
    return SchemaProblem(place(list(error.absolute_path)), error.message, error)
