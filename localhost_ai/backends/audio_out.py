"""Speech out: 16-bit mono PCM encoded in memory with PyAV (no command line), into the
formats OpenAI's /v1/audio/speech answers with."""

from __future__ import annotations

import io
from typing import Any

from localhost_ai.backends.optional import require

# response_format -> (PyAV container, codec, sample format)
FORMATS: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "opus": ("ogg", "libopus", "s16"),
    "aac": ("adts", "aac", "fltp"),
    "flac": ("flac", "flac", "s16"),
    "wav": ("wav", "pcm_s16le", "s16"),
}
# Sample rates the codecs take; a voice's own rate is resampled to the nearest above it.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def encode(pcm: bytes, sample_rate: int, response_format: str) -> bytes:
    """The whole of `pcm` (16-bit little-endian mono) as one file of `response_format`."""
    if response_format == "pcm":
        return pcm
    av, np = require("Encoding speech", "tts", "av", "numpy")
    container_name, codec, sample_format = FORMATS[response_format]
    rate = sample_rate
    if codec == "libopus":
        rate = next((r for r in _OPUS_RATES if r >= sample_rate), 48000)
    out = io.BytesIO()
    with av.open(out, "w", format=container_name) as container:
        stream: Any = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
