"""whisper backend: openai-whisper checkpoints (`.pt`), transcription and translation."""

from __future__ import annotations

from typing import Any, Iterator

from localhost_ai.backends.audio import SAMPLE_RATE, decode_audio, segment, transcription_piece, whisper_request
from localhost_ai.backends.base import TRANSCRIPTION, Backend, CallControl, Piece, register
from localhost_ai.backends.optional import require
from localhost_ai.errors import InvalidRequest


@register("whisper")
class OpenAIWhisperBackend(Backend):
    @classmethod
    def capabilities(cls, config: dict[str, Any]) -> frozenset[str]:
        return frozenset({TRANSCRIPTION})

    def load(self) -> None:
        torch, whisper = require("The whisper backend", "whisper", "torch", "whisper")
        torch.set_num_threads(self.config.get("threads") or self.defaults.get("threads") or 1)
        self.model = whisper.load_model(self.config["model_path"], device="cpu")
        self.default_language = (self.config.get("parameters") or {}).get("language")

    def op_transcribe(self, payload: dict[str, Any], cancel: CallControl) -> Iterator[Piece]:
        audio = decode_audio(payload["audio"], payload.get("filename", ""))
        task = payload.get("task", "transcribe")
        from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

        requested = payload.get("language") or self.default_language
        if requested and requested.lower() not in LANGUAGES and requested.lower() not in TO_LANGUAGE_CODE:
            raise InvalidRequest(f"Unknown language {requested!r}; use an ISO-639-1 code such as 'en'.", param="language")
        language, model_task, temperatures = whisper_request(payload, self.default_language, self.model.is_multilingual)
        options: dict[str, Any] = {
            "task": model_task,
            "language": language,
            "initial_prompt": payload.get("prompt") or None,
            "temperature": temperatures,
            "fp16": False,
            "verbose": None,
        }
        if payload.get("beam_size"):
            options["beam_size"] = payload["beam_size"]
        result = self.model.transcribe(audio, **options)  # stitches Whisper's 30-second windows
        if cancel.is_set():
            return
        segments = [
            segment(i, s["seek"], s["start"], s["end"], s["text"], s["tokens"], s["temperature"], s["avg_logprob"],
                    s["compression_ratio"], s["no_speech_prob"])
            for i, s in enumerate(result.get("segments") or [])
        ]
        yield transcription_piece(result.get("text", ""), result.get("language"), audio.size / SAMPLE_RATE,
                                  segments, task)
