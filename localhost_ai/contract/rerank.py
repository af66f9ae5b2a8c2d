"""Reranking requests: documents scored against a query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class RerankRequest:
    OP: ClassVar[str] = "rerank"
    query: str
    documents: tuple[str, ...]
