"""Embeddings and reranking requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

EmbedInput = Union[str, list[int]]  # a text, or token ids of the model's vocabulary


@dataclass(frozen=True)
class EmbedRequest:
    OP: ClassVar[str] = "embeddings"
    inputs: tuple[EmbedInput, ...]
    dimensions: int | None = None  # shorter rows, where the model allows it
    truncate: bool = True  # cut inputs longer than the model's window rather than refuse them
