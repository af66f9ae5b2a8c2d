"""Text-to-speech requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class SpeechRequest:
    OP: ClassVar[str] = "speech"
    input: str
    voice: str | None = None
    speed: float = 1.0  # 0.25 to 4: the voice's own pace times this
    response_format: str = "pcm"  # mp3, opus, aac, flac, wav or pcm (16-bit little-endian mono)
