"""whisper backend: openai-whisper checkpoints (`.pt`), transcription and translation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from localhost_ai.backends.audio import SAMPLE_RATE, WhisperOptions, decode_audio, segment, transcription, whisper_request
from localhost_ai.backends.base import Backend, CallControl, register
from localhost_ai.backends.optional import require
from localhost_ai.contract.events import Transcription
from localhost_ai.contract.transcribe import TranscribeRequest
from localhost_ai.errors import InvalidRequest


GGML_MAGIC = b"lmgg"  # whisper.cpp's weights (ggml-*.bin) begin with 0x67676d6c


@dataclass(frozen=True)
class OpenAIWhisperOptions(WhisperOptions):
    @classmethod
    def weights_problem(cls, path: Path) -> str | None:
        """LocalAI's `whisper` backend is whisper.cpp: its files name ggml weights, which
        openai-whisper cannot read."""
        try:
            with open(path, "rb") as file:
                magic = file.read(4)
        except OSError:
            return None  # a folder, or unreadable: the load says why
        if magic == GGML_MAGIC:
            return ("is whisper.cpp (ggml) weights, which LocalAI's `whisper` backend runs; this server's `whisper` is "
                    "openai-whisper and reads its .pt checkpoints, and `faster-whisper` reads CTranslate2 folders")
        return None


@register("whisper")
class OpenAIWhisperBackend(Backend):
    Options = OpenAIWhisperOptions

    def load(self) -> None:
        torch, whisper = require("The whisper backend", "whisper", "torch", "whisper")
        torch.set_num_threads(self.config.threads or 1)
        self.model = whisper.load_model(str(self.config.model_path), device="cpu")

    def op_transcribe(self, request: TranscribeRequest, cancel: CallControl) -> Iterator[Transcription]:
        audio = decode_audio(request.audio, request.filename, request.max_seconds)
        from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

        requested = request.language or self.options.language
        if requested and requested.lower() not in LANGUAGES and requested.lower() not in TO_LANGUAGE_CODE:
            raise InvalidRequest(f"Unknown language {requested!r}; use an ISO-639-1 code such as 'en'.", param="language")
        language, model_task, temperatures = whisper_request(request, self.options.language, self.model.is_multilingual)
        options: dict[str, Any] = {
            "task": model_task,
            "language": language,
            "initial_prompt": request.prompt or None,
            "temperature": temperatures,
            "fp16": False,
            "verbose": None,
        }
        if request.beam_size:
            options["beam_size"] = request.beam_size
        result = self.model.transcribe(audio, **options)  # stitches Whisper's 30-second windows
        if cancel.is_set():
            return
        segments = [
            segment(i, s["seek"], s["start"], s["end"], s["text"], s["tokens"], s["temperature"], s["avg_logprob"],
                    s["compression_ratio"], s["no_speech_prob"])
            for i, s in enumerate(result.get("segments") or [])
        ]
        yield transcription(result.get("text", ""), result.get("language"), audio.size / SAMPLE_RATE,
                            segments, request.task)
