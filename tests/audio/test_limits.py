"""Audio that would cost more than a request may: refused from its container's header
before anything is decoded, and a worker under a memory limit that fails one big request
alone and serves the next."""

from __future__ import annotations

import io
import os
import time

import pytest

from tests.audio.conftest import CONTENT_WORDS
from tests.conftest import start_server, stop_server

WHISPER_YAML = "name: whisper\nbackend: faster-whisper\nparameters:\n  model: tiny-en\n"


def silence(minutes: float) -> bytes:
    """Minutes of silence as FLAC: a few hundred KB for most of an hour."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=16000)
        stream.layout = "mono"
        second = np.zeros((1, 16000), dtype=np.int16)
        for n in range(int(minutes * 60)):
            frame = av.AudioFrame.from_ndarray(second, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, n * 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def worker(server) -> tuple[int, int]:
    """The whisper worker's pid and its data size in bytes."""
    pid = server.get("/backend/monitor?model=whisper").json()["pid"]
    with open(f"/proc/{pid}/status") as status:
        data = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData"))
    return pid, data


@pytest.fixture(scope="module")
def whisper_server(tmp_path_factory, faster_whisper_path):
    folder = tmp_path_factory.mktemp("models")
    os.symlink(faster_whisper_path, folder / "tiny-en")
    (folder / "whisper.yaml").write_text(WHISPER_YAML)
    server = start_server(folder, tmp_path_factory.mktemp("logs"), "--upload-limit", "3")
    yield server
    stop_server(server)


def transcribe(server, data: bytes, name: str = "a.flac"):
    return server.post("/v1/audio/transcriptions", files={"file": (name, data)}, data={"model": "whisper"})


def test_long_audio_is_refused_from_its_header_before_decoding(whisper_server, speech_wav):
    assert transcribe(whisper_server, speech_wav.read_bytes(), "speech.wav").ok
    before = worker(whisper_server)
    for minutes in (20, 40):
        data = silence(minutes)
        assert len(data) < 500_000
        started = time.monotonic()
        response = transcribe(whisper_server, data)
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == "audio_too_long", error
        assert f"{minutes:.1f} minutes" in error["message"] and "--max-audio-seconds" in error["message"]
        assert time.monotonic() - started < 1.0
    pid, data_size = worker(whisper_server)
    assert pid == before[0] and data_size < before[1] * 1.02  # nothing was decoded


def test_an_empty_file_is_a_400_that_says_so(whisper_server):
    response = transcribe(whisper_server, b"", "empty.wav")
    assert response.status_code == 400 and response.json()["error"]["message"] == "The uploaded file is empty."


def test_the_duration_limit_is_a_setting(tmp_path, faster_whisper_path, speech_wav):
    folder = tmp_path / "models"
    folder.mkdir()
    os.symlink(faster_whisper_path, folder / "tiny-en")
    (folder / "whisper.yaml").write_text(WHISPER_YAML)
    server = start_server(folder, tmp_path, "--max-audio-seconds", "3s")
    try:
        response = transcribe(server, speech_wav.read_bytes(), "speech.wav")  # about 5 seconds of speech
        assert response.status_code == 400 and "3 seconds" in response.json()["error"]["message"]
    finally:
        stop_server(server)


def test_a_worker_under_a_memory_limit_fails_a_big_request_alone_and_serves_the_next(whisper_server, speech_wav):
    speech = speech_wav.read_bytes()
    assert transcribe(whisper_server, speech, "speech.wav").ok
    _, data_size = worker(whisper_server)
    # Room for short speech, not for eight minutes (whose features alone are a few hundred MB).
    limit = data_size + 200 * (1 << 20)
    try:
        (whisper_server.models_path / "whisper.yaml").write_text(WHISPER_YAML + f"memory_limit: {limit}\n")
        time.sleep(1.1)  # the folder is looked at again within a second; the changed model reloads on next use
        assert transcribe(whisper_server, speech, "speech.wav").ok
        pid, _ = worker(whisper_server)
        big = transcribe(whisper_server, silence(8))
        error = big.json()["error"]
        assert big.status_code == 400 and error["code"] == "memory_limit_exceeded", error
        assert "memory_limit" in error["message"]
        print(f"\nworker data {data_size >> 20} MiB, memory_limit {limit >> 20} MiB: {error['message']}")
        after = transcribe(whisper_server, speech, "speech.wav")
        assert after.ok and sum(word in after.json()["text"].lower() for word in CONTENT_WORDS) >= 5
        assert worker(whisper_server)[0] == pid
    finally:
        (whisper_server.models_path / "whisper.yaml").write_text(WHISPER_YAML)
