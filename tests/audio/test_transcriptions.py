"""/v1/audio/transcriptions and /v1/audio/translations with the real Whisper tiny.en
(faster-whisper) on speech made by espeak-ng, and openai-whisper on a random checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import requests

from tests.audio.conftest import CONTENT_WORDS, transcode
from tests.conftest import GEMMA_FILE, assert_error, assert_schema, place, start_server, stop_server


@pytest.fixture(scope="module")
def audio_server(tmp_path_factory, faster_whisper_path, random_whisper_checkpoint, gemma_gguf):
    folder = tmp_path_factory.mktemp("models")
    os.symlink(faster_whisper_path, folder / "tiny-en")
    (folder / "whisper.yaml").write_text("name: whisper\nbackend: faster-whisper\nparameters:\n  model: tiny-en\n")
    shutil.copy(random_whisper_checkpoint, folder / "random.pt")
    (folder / "random.yaml").write_text("name: random\nbackend: whisper\nparameters:\n  model: random.pt\n")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(f"name: gemma\nparameters:\n  model: {GEMMA_FILE}\n")
    server = start_server(folder, tmp_path_factory.mktemp("logs"), "--upload-limit", "3")
    yield server
    stop_server(server)


def words_found(text: str) -> int:
    lowered = text.lower()
    return sum(1 for word in CONTENT_WORDS if word in lowered)


LONG_WORDS = ["sunrise", "nurses", "chemistry", "periodic", "fisherman", "seagulls", "bridge", "engineers",
              "grandmother", "tomatoes"]


def long_words_found(text: str) -> int:
    lowered = text.lower()
    return sum(1 for word in LONG_WORDS if word in lowered)


def post(server, path: str, audio: bytes, filename: str = "speech.wav", **fields) -> requests.Response:
    return requests.post(server.url + path, files={"file": (filename, audio)},
                         data={"model": "whisper", **fields}, timeout=300)


def test_openai_client_transcribes_espeak_speech(audio_server, speech_wav):
    client = audio_server.client()
    with speech_wav.open("rb") as handle:
        result = client.audio.transcriptions.create(model="whisper", file=handle)
    assert_schema(result.model_dump(exclude_unset=True), "CreateTranscriptionResponseJson")
    assert words_found(result.text) >= 5, result.text


def test_openai_client_translation_gives_english(audio_server, speech_wav):
    with speech_wav.open("rb") as handle:
        result = audio_server.client().audio.translations.create(model="whisper", file=handle)
    assert_schema(result.model_dump(exclude_unset=True), "CreateTranslationResponseJson")
    assert words_found(result.text) >= 5, result.text


TIMESTAMP = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in match)
    return h * 3600 + m * 60 + s + ms / 1000


def cue_times(text: str) -> list[tuple[float, float]]:
    return [(seconds(m[:4]), seconds(m[4:])) for m in re.findall(TIMESTAMP + r" --> " + TIMESTAMP, text)]


def assert_in_order(cues: list[tuple[float, float]]) -> None:
    assert cues
    for start, end in cues:
        assert start <= end
    assert all(a[1] <= b[0] + 1e-3 for a, b in zip(cues, cues[1:])), cues


def test_every_response_format_parses(audio_server, long_wav):
    audio = long_wav.read_bytes()
    plain = post(audio_server, "/v1/audio/transcriptions", audio, response_format="text")
    assert plain.headers["Content-Type"].startswith("text/plain") and long_words_found(plain.text) >= 4

    srt = post(audio_server, "/v1/audio/transcriptions", audio, response_format="srt").text
    blocks = [b for b in srt.strip().split("\n\n") if b.strip()]
    assert [b.split("\n")[0] for b in blocks] == [str(n) for n in range(1, len(blocks) + 1)]
    assert_in_order(cue_times(srt))

    vtt = post(audio_server, "/v1/audio/transcriptions", audio, response_format="vtt").text
    assert vtt.startswith("WEBVTT\n\n")
    assert_in_order(cue_times(vtt))

    verbose = post(audio_server, "/v1/audio/transcriptions", audio, response_format="verbose_json").json()
    assert verbose["task"] == "transcribe" and verbose["language"] == "en" and verbose["duration"] > 50
    assert len(verbose["segments"]) == len(blocks)
    for key in ("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
                "no_speech_prob"):
        assert key in verbose["segments"][0]


def test_a_sixty_second_clip_comes_back_whole(audio_server, long_wav):
    verbose = post(audio_server, "/v1/audio/transcriptions", long_wav.read_bytes(), response_format="verbose_json").json()
    assert verbose["duration"] >= 55, verbose["duration"]
    text = verbose["text"].lower()
    assert "paragraph 1" in text or "paragraph one" in text
    assert long_words_found(text) >= 5, text
    assert "elephant" in text or "bananas" in text, text[-300:]
    assert verbose["segments"][-1]["end"] > 50
    assert max(s["seek"] for s in verbose["segments"]) >= 3000, "more than one 30-second window"


@pytest.mark.parametrize(("container", "codec", "name"),
                         [("mp3", "mp3", "a.mp3"), ("ogg", "libopus", "a.ogg"), ("flac", "flac", "a.flac"),
                          ("webm", "libopus", "a.webm"), ("ipod", "aac", "a.m4a")])
def test_common_containers_decode(audio_server, speech_wav, container, codec, name):
    audio = transcode(speech_wav, container, codec)
    reply = post(audio_server, "/v1/audio/transcriptions", audio, filename=name)
    assert reply.status_code == 200, reply.text
    assert words_found(reply.json()["text"]) >= 4, reply.json()["text"]


def test_prompt_language_temperature_and_beam_size_are_accepted(audio_server, speech_wav):
    reply = post(audio_server, "/v1/audio/transcriptions", speech_wav.read_bytes(), language="en",
                 prompt="A sentence about foxes and France.", temperature="0", beam_size="2")
    assert reply.status_code == 200 and words_found(reply.json()["text"]) >= 5


def test_openai_whisper_backend_on_a_random_checkpoint(audio_server, long_wav):
    """The output is noise; this proves loading the .pt, decoding and windowing, and the shapes."""
    reply = requests.post(audio_server.url + "/v1/audio/transcriptions", files={"file": ("long.wav", long_wav.read_bytes())},
                          data={"model": "random", "response_format": "verbose_json", "temperature": "0"}, timeout=300)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["duration"] >= 55 and isinstance(body["text"], str)
    assert len({s["seek"] for s in body["segments"]}) >= 2, "the clip was decoded in more than one window"
    srt = requests.post(audio_server.url + "/v1/audio/translations", files={"file": ("long.wav", long_wav.read_bytes())},
                        data={"model": "random", "response_format": "srt", "temperature": "0"}, timeout=300)
    assert srt.status_code == 200
    assert_in_order(cue_times(srt.text))


def test_bad_uploads_get_clear_errors_and_the_server_keeps_serving(audio_server, speech_wav):
    url = audio_server.url + "/v1/audio/transcriptions"
    error = assert_error(requests.post(url, data={"model": "whisper"}, files={"other": ("x", b"x")}, timeout=30), 400, "file")
    assert "file" in error["message"]
    assert_error(requests.post(url, json={"model": "whisper"}, timeout=30), 400, "file")
    assert_error(post(audio_server, "/v1/audio/transcriptions", b""), 400, "file")
    assert_error(post(audio_server, "/v1/audio/transcriptions", b"this is not audio at all" * 100, filename="a.mp3"), 400, "file")
    assert_error(post(audio_server, "/v1/audio/transcriptions", os.urandom(50_000), filename="a.wav"), 400, "file")
    assert_error(post(audio_server, "/v1/audio/transcriptions", speech_wav.read_bytes(), response_format="docx"), 400,
                 "response_format")
    assert_error(post(audio_server, "/v1/audio/transcriptions", speech_wav.read_bytes(), temperature="hot"), 400, "temperature")
    assert_error(requests.post(url, files={"file": ("a.wav", speech_wav.read_bytes())},
                               data={"model": "random", "language": "klingon"}, timeout=60), 400, "language")
    too_big = os.urandom(4 * 1024 * 1024)
    error = assert_error(post(audio_server, "/v1/audio/transcriptions", too_big), 413)
    assert "3 MB" in error["message"]
    not_speech = requests.post(url, files={"file": ("a.wav", speech_wav.read_bytes())}, data={"model": "gemma"}, timeout=30)
    assert_error(not_speech, 400, "model")
    assert words_found(post(audio_server, "/v1/audio/transcriptions", speech_wav.read_bytes()).json()["text"]) >= 5
    assert json.loads(requests.get(audio_server.url + "/healthz", timeout=5).text)["status"] == "ok"
