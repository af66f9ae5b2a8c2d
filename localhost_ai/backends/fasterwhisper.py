"""faster-whisper backend: a CTranslate2 Whisper folder, transcription and translation."""

from __future__ import annotations

from typing import Any, Iterator

from localhost_ai.backends.audio import decode_audio, segment, transcription_piece, whisper_request
from localhost_ai.backends.base import TRANSCRIPTION, Backend, CallControl, Piece, register
from localhost_ai.backends.optional import require
from localhost_ai.errors import InvalidRequest


@register("faster-whisper")
class FasterWhisperBackend(Backend):
    @classmethod
    def capabilities(cls, config: dict[str, Any]) -> frozenset[str]:
        return frozenset({TRANSCRIPTION})

    def load(self) -> None:
        (faster_whisper,) = require("The faster-whisper backend", "whisper", "faster_whisper")
        parameters = self.config.get("parameters") or {}
        self.model = faster_whisper.WhisperModel(
            self.config["model_path"],
            device="cpu",
            compute_type=parameters.get("compute_type") or "int8",
            cpu_threads=self.config.get("threads") or self.defaults.get("threads") or 0,
        )
        self.default_language = parameters.get("language")

    def op_transcribe(self, payload: dict[str, Any], cancel: CallControl) -> Iterator[Piece]:
        audio = decode_audio(payload["audio"], payload.get("filename", ""))
        task = payload.get("task", "transcribe")
        language, model_task, temperatures = whisper_request(payload, self.default_language,
                                                             self.model.model.is_multilingual)
        if language and language not in self.model.supported_languages:
            raise InvalidRequest(f"This model does not know the language {language!r}; it knows: "
                                 f"{', '.join(self.model.supported_languages)}.", param="language")
        segments_iter, info = self.model.transcribe(
            audio,
            language=language,
            task=model_task,
            initial_prompt=payload.get("prompt") or None,
            beam_size=payload.get("beam_size") or 5,
            temperature=list(temperatures),
            vad_filter=False,
        )
        segments, texts = [], []
        for index, seg in enumerate(segments_iter):  # 30-second windows, decoded one after another
            if cancel.is_set():
                return
            cancel.beat()
            segments.append(segment(index, seg.seek, seg.start, seg.end, seg.text, seg.tokens, seg.temperature,
                                    seg.avg_logprob, seg.compression_ratio, seg.no_speech_prob))
            texts.append(seg.text)
        yield transcription_piece("".join(texts), info.language, info.duration, segments, task)
