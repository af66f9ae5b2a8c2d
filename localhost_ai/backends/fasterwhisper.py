"""faster-whisper backend: a CTranslate2 Whisper folder, transcription and translation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from localhost_ai.backends.audio import WhisperOptions, decode_audio, segment, transcription, whisper_request
from localhost_ai.backends.base import Backend, CallControl, register
from localhost_ai.backends.optional import require
from localhost_ai.config import option
from localhost_ai.contract.events import Transcription
from localhost_ai.contract.transcribe import TranscribeRequest
from localhost_ai.errors import InvalidRequest


@dataclass(frozen=True)
class FasterWhisperOptions(WhisperOptions):
    compute_type: str = option({"type": "string"}, "int8", key="parameters.compute_type")


@register("faster-whisper")
class FasterWhisperBackend(Backend):
    Options = FasterWhisperOptions

    def load(self) -> None:
        (faster_whisper,) = require("The faster-whisper backend", "whisper", "faster_whisper")
        self.model = faster_whisper.WhisperModel(
            str(self.config.model_path),
            device="cpu",
            compute_type=self.options.compute_type or "int8",
            cpu_threads=self.config.threads or 0,
        )

    def op_transcribe(self, request: TranscribeRequest, cancel: CallControl) -> Iterator[Transcription]:
        audio = decode_audio(request.audio, request.filename, request.max_seconds)
        language, model_task, temperatures = whisper_request(request, self.options.language,
                                                             self.model.model.is_multilingual)
        if language and language not in self.model.supported_languages:
            raise InvalidRequest(f"This model does not know the language {language!r}; it knows: "
                                 f"{', '.join(self.model.supported_languages)}.", param="language")
        segments_iter, info = self.model.transcribe(
            audio,
            language=language,
            task=model_task,
            initial_prompt=request.prompt or None,
            beam_size=request.beam_size or 5,
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
        yield transcription("".join(texts), info.language, info.duration, segments, request.task)
