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


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} minutes" if seconds >= 60 else f"{seconds:.0f} seconds"


def _too_long(seconds: float, limit: float, param: str) -> InvalidRequest:
    return InvalidRequest(f"The audio is {_minutes(seconds)} long; this server reads at most {_minutes(limit)} "
                          "(--max-audio-seconds).", param=param, code="audio_too_long")


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """The length the container's header gives, if it gives one (FLAC, WAV, MP4 and most
    others do; raw MP3 gives an estimate)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def decode_audio(data: bytes, filename: str = "", max_seconds: float = 600.0, *, param: str = "file",
                 rate: int = SAMPLE_RATE, extra: str = "whisper") -> Any:
    """Any container FFmpeg reads (wav, mp3, ogg, flac, m4a, webm ...) from memory: the
    upload is never written anywhere and no command line is built from it.  Audio longer
    than `max_seconds` is refused from the header before anything is decoded, and again
    while decoding (a header can lie); the samples go frame by frame into one array, so
    decoding holds no more than the audio itself.  `param` is the request field named in
    errors; `rate` the sample rate wanted (mono float32 either way); `extra` the package
    extra that installs PyAV for the caller."""
    av, np = require("Decoding audio", extra, "av", "numpy")
    if not data:
        raise InvalidRequest("The uploaded file is empty.", param=param, code="empty_file")
    limit = int(max_seconds * rate)
    audio = np.zeros(0, dtype=np.float32)
    filled = 0

    def append(samples: Any) -> None:
        nonlocal audio, filled
        end = filled + samples.size
        if end > limit:
            raise _too_long(end / rate, max_seconds, param)
        if end > audio.size:
            grown = np.empty(min(limit, max(end, audio.size * 3 // 2)), dtype=np.float32)
            grown[:filled] = audio[:filled]
            audio = grown
        # 16-bit samples scaled to [-1, 1], as Whisper's own loaders make them (openai-whisper
        # through ffmpeg's s16le, faster-whisper through PyAV): the models are that sensitive.
        np.multiply(samples, 1 / 32768.0, out=audio[filled:end], casting="unsafe")
        filled = end

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidRequest(f"The uploaded file {filename!r} holds no audio stream.", param=param,
                                     code="invalid_audio")
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > max_seconds:
                raise _too_long(declared, max_seconds, param)
            if declared:
                audio = np.empty(min(limit, int(declared * rate) + rate), dtype=np.float32)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                append(out.to_ndarray().reshape(-1))
    except InvalidRequest:
        raise
    except MemoryError:
        raise
    except Exception:  # PyAV's errors for data that is not audio it can read
        raise InvalidRequest(f"The uploaded file {filename!r} could not be decoded as audio.", param=param,
                             code="invalid_audio") from None
    if filled == 0:
        raise InvalidRequest(f"The uploaded file {filename!r} holds no audio samples.", param=param,
                             code="invalid_audio")
    return audio[:filled] if filled == audio.size else audio[:filled].copy()


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
