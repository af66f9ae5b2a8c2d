"""Text-to-speech requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class SpeechRequest:
    OP: ClassVar[str] = "speech"
    input: str
    voice: str | None = None
    speed: float = 1.0
