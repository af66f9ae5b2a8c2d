"""Speech-to-text requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass(frozen=True)
class TranscribeRequest:
    OP: ClassVar[str] = "transcribe"
    audio: bytes  # the uploaded file, in any container FFmpeg reads
    filename: str = ""
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None  # None: Whisper's fallback ladder
    beam_size: int | None = None
    max_seconds: float = 600.0  # longer audio is refused, from its container's header when it tells
