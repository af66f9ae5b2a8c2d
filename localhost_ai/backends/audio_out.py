"""Speech out: 16-bit mono PCM encoded in memory with PyAV (no command line), sentence by
sentence, into the formats OpenAI's /v1/audio/speech answers with.  The muxer writes into
a sink that cannot seek, so every format comes out as a stream: what each sentence adds
can be sent at once (a WAV header then says its length is unknown, as OpenAI's does)."""

from __future__ import annotations

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
# Sample rates Opus takes; a voice's own rate goes to the nearest above it.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class _Sink:
    """A write-only file for the muxer; `take` hands over what it has written so far."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class Encoder:
    """`add(pcm)` returns the encoded bytes that are ready; `close()` the rest."""

    def __init__(self, sample_rate: int, response_format: str) -> None:
        self.sample_rate = sample_rate
        self.format = response_format
        if response_format == "pcm":
            return
        self.av, self.np = require("Encoding speech", "tts", "av", "numpy")
        container_name, codec, sample_format = FORMATS[response_format]
        rate = next((r for r in _OPUS_RATES if r >= sample_rate), 48000) if codec == "libopus" else sample_rate
        self.sink = _Sink()
        self.container = self.av.open(self.sink, "w", format=container_name)
        try:
            self.stream = self.container.add_stream(codec, rate=rate, layout="mono")
            self.resampler = self.av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        except BaseException:
            self.discard()
            raise

    def add(self, pcm: bytes) -> bytes:
        if self.format == "pcm":
            return pcm
        frame = self.av.AudioFrame.from_ndarray(self.np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16",
                                                layout="mono")
        frame.sample_rate = self.sample_rate
        self._encode(self.resampler.resample(frame))
        return self.sink.take()

    def close(self) -> bytes:
        if self.format == "pcm":
            return b""
        self._encode(self.resampler.resample(None))
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        return self.sink.take()

    def discard(self) -> None:
        """Let the container go without flushing it (a cancelled or failed speech)."""
        if self.format == "pcm":
            return
        try:
            self.container.close()
        except Exception:  # a container whose muxer already failed: nothing more to free
            pass

    def _encode(self, frames: list[Any]) -> None:
        for frame in frames:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
