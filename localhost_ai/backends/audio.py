"""What the speech backends share: uploaded bytes decoded in-process (PyAV) to 16 kHz
mono float32, and the transcription event they hand back."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from localhost_ai.backends.optional import require
from localhost_ai.config import BackendOptions, option
from localhost_ai.contract.events import Segment, Transcription
from localhost_ai.contract.transcribe import TranscribeRequest
from localhost_ai.errors import InvalidRequest

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class WhisperOptions(BackendOptions):
    language: str | None = option({"type": "string"}, key="parameters.language")
MAX_SECONDS = 4 * 3600  # decoding stops here: an upload cannot make the worker decode forever


def decode_audio(data: bytes, filename: str = "") -> Any:
    """Any container FFmpeg reads (wav, mp3, ogg, flac, m4a, webm ...) from memory: the
    upload is never written anywhere and no command line is built from it."""
    av, np = require("Decoding audio", "whisper", "av", "numpy")
    if not data:
        raise InvalidRequest("The uploaded file is empty.", param="file", code="empty_file")
    chunks = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidRequest(f"The uploaded file {filename!r} holds no audio stream.", param="file",
                                     code="invalid_audio")
            stream = container.streams.audio[0]
            # 16-bit samples scaled to [-1, 1], as Whisper's own loaders make them (openai-whisper
            # through ffmpeg's s16le, faster-whisper through PyAV): the models are that sensitive.
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    chunks.append(samples)
                    total += samples.size
                if total > MAX_SECONDS * SAMPLE_RATE:
                    raise InvalidRequest(f"The audio is longer than {MAX_SECONDS // 3600} hours.", param="file",
                                         code="audio_too_long")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except InvalidRequest:
        raise
    except Exception as exc:  # PyAV's errors for data that is not audio it can read
        raise InvalidRequest(f"The uploaded file {filename!r} could not be decoded as audio: {exc}", param="file",
                             code="invalid_audio") from None
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise InvalidRequest(f"The uploaded file {filename!r} holds no audio samples.", param="file",
                             code="invalid_audio")
    return audio


# Whisper's own fallback: decode again, hotter, when a window's output looks like a loop.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def whisper_request(request: TranscribeRequest, default_language: str | None, multilingual: bool) -> tuple[str | None, str, tuple[float, ...]]:
    """(language, task, temperatures) for a Whisper model.  An English-only model already
    gives English, so it answers a translation with its transcription."""
    temperatures = (request.temperature,) if request.temperature is not None else FALLBACK_TEMPERATURES
    if not multilingual:
        return "en", "transcribe", temperatures
    return request.language or default_language, request.task, temperatures


def transcription(text: str, language: str | None, duration: float, segments: list[Segment], task: str) -> Transcription:
    return Transcription(task=task, text=text.strip(), language=language or "", duration=round(duration, 3),
                         segments=segments)


def segment(index: int, seek: int, start: float, end: float, text: str, tokens: list[int], temperature: float,
            avg_logprob: float, compression_ratio: float, no_speech_prob: float) -> Segment:
    return Segment(id=index, seek=int(seek), start=round(float(start), 3), end=round(float(end), 3), text=text,
                   tokens=[int(t) for t in tokens], temperature=float(temperature), avg_logprob=float(avg_logprob),
                   compression_ratio=float(compression_ratio), no_speech_prob=float(no_speech_prob))
