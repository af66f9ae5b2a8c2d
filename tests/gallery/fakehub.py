"""A loopback HTTP server that plays Hugging Face (`HF_ENDPOINT`) and GitHub's raw host
(`GITHUB_RAW_ENDPOINT`, under /gh): files with Range support, and files that are slow,
cut off mid-way, or fail, as real hubs sometimes are."""

from __future__ import annotations

import threading
from contextlib import contextmanager
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator


@dataclass
class Behaviour:
    delay: float = 0.0          # seconds to sleep per chunk
    chunk: int = 64 * 1024
    cut_after: int | None = None  # the first response closes the connection after this many bytes
    fail_times: int = 0         # answer 503 this many times first
    ignore_range: bool = False
    no_length: bool = False     # no Content-Length: the body ends when the connection closes


@dataclass
class Request:
    path: str
    range: str | None


@dataclass
class FakeHub:
    files: dict[str, bytes | Path] = field(default_factory=dict)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def hf(self, owner_repo: str, path: str, content: bytes | Path, **behaviour) -> str:
        """Serve `content` as huggingface://owner/repo/path; returns that URI."""
        self.files[f"/{owner_repo}/resolve/main/{path}"] = content
        if behaviour:
            self.behaviour[f"/{owner_repo}/resolve/main/{path}"] = Behaviour(**behaviour)
        return f"huggingface://{owner_repo}/{path}"

    def github(self, owner_repo: str, path: str, content: bytes | str, ref: str = "main") -> str:
        self.files[f"/gh/{owner_repo}/{ref}/{path}"] = content.encode() if isinstance(content, str) else content
        return f"github:{owner_repo}/{path}@{ref}"

    def requests_for(self, suffix: str) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    @property
    def env(self) -> dict[str, str]:
        # It plays a hub the operator points the server at, on loopback: a mirror on the LAN.
        return {"HF_ENDPOINT": self.url, "GITHUB_RAW_ENDPOINT": self.url + "/gh", "ALLOW_PRIVATE_URLS": "1"}


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            hub.requests.append(Request(self.path, self.headers.get("Range")))
            content = hub.files.get(self.path)
            if content is None:
                self.send_error(404)
                return
            data = content.read_bytes() if isinstance(content, Path) else content
            behaviour = hub.behaviour.get(self.path, Behaviour())
            if behaviour.fail_times > 0:
                behaviour.fail_times -= 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            header = self.headers.get("Range")
            if header and header.startswith("bytes=") and not behaviour.ignore_range:
                start = int(header[6:].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            if behaviour.no_length:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            limit = len(data)
            if behaviour.cut_after is not None:
                limit = min(limit, start + behaviour.cut_after)
                behaviour.cut_after = None
            position = start
            try:
                while position < limit:
                    end = min(limit, position + behaviour.chunk)
                    self.wfile.write(data[position:end])
                    self.wfile.flush()
                    position = end
                    if behaviour.delay:
                        time.sleep(behaviour.delay)
            except (BrokenPipeError, ConnectionResetError):
                return
            if limit < len(data):
                self.close_connection = True
                self.connection.shutdown(2)

    return Handler


def start_fake_hub() -> tuple[FakeHub, ThreadingHTTPServer]:
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hub, server


@contextmanager
def running_hub() -> Iterator[FakeHub]:
    """A fake hub for the length of the block (a fixture's scope)."""
    fake, server = start_fake_hub()
    try:
        yield fake
    finally:
        server.shutdown()
