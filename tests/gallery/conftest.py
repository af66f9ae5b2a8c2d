from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from tests.gallery.fakehub import FakeHub, running_hub


@pytest.fixture
def hub():
    with running_hub() as fake:
        yield fake


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def gallery_env(hub: FakeHub, index_uri: str, **extra: str) -> dict[str, str]:
    return {**hub.env, "GALLERIES": json.dumps([{"name": "test", "url": index_uri}]), **extra}


def one_file_body(hub: FakeHub, name: str, filename: str, uri: str, sha256: str | None = None) -> dict:
    """An apply body: a config on the loopback GitHub naming one file, and that file."""
    config = hub.github("acme/defs", f"{name}.yaml", f"name: {name}\nparameters:\n  model: {filename}\n")
    spec = {"filename": filename, "uri": uri}
    if sha256 is not None:
        spec["sha256"] = sha256
    return {"config_url": config, "files": [spec]}


def wait_job(server, uuid: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = server.get(f"/models/jobs/{uuid}").json()
        if job["processed"]:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {uuid} did not finish: {job}\n{server.log()[-2000:]}")


def files_under(folder) -> set[str]:
    return {os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names}
