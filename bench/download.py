"""The gallery's download path against a plain streamed copy of the same file from the
same loopback server (throughput ratio), and the peak memory of the download path.

    python bench/download.py [--size-mb 1024]

The download path is the one install jobs use: Range-capable streaming to a .partial
file, sha256 computed on the way, rename into place.  It runs in a child process so that
its peak RSS (VmHWM) can be compared with its RSS before the download began."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

CHUNK = 1024 * 1024


def serve_file(path: Path) -> tuple[ThreadingHTTPServer, str]:
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            start = 0
            header = self.headers.get("Range")
            if header and header.startswith("bytes="):
                start = int(header[6:].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            with path.open("rb") as handle:
                handle.seek(start)
                while block := handle.read(CHUNK):
                    self.wfile.write(block)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/file.bin"


def status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child(url: str, target: str, sha: str) -> None:
    """Run the gallery's download in this process and report time and memory as JSON."""
    from localhost_ai.gallery.download import download, new_session
    from localhost_ai.gallery.uris import Source

    async def run() -> float:
        async with new_session() as session:
            idle = status_kb("VmRSS")
            started = time.perf_counter()
            await download(session, Source(uri=url, url=url), Path(target), sha or None, lambda done, total: None)
            return time.perf_counter() - started, idle

    seconds, idle = asyncio.run(run())
    print(json.dumps({"seconds": seconds, "idle_kb": idle, "peak_kb": status_kb("VmHWM")}))


def plain_copy(url: str, target: Path) -> float:
    started = time.perf_counter()
    with requests.get(url, stream=True, timeout=60) as response, target.open("wb") as handle:
        for block in response.iter_content(CHUNK):
            handle.write(block)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-download-"))
    source = workdir / "source.bin"
    digest = hashlib.sha256()
    with source.open("wb") as handle:
        for _ in range(args.size_mb):
            block = os.urandom(CHUNK)
            digest.update(block)
            handle.write(block)
    server, url = serve_file(source)
    size_mb = args.size_mb
    try:
        plain: list[float] = []
        ours: dict[str, list[float]] = {"sha256": [], "none": []}
        peaks: list[float] = []
        for round_no in range(1, args.rounds + 1):
            copy_target, our_target = workdir / "plain.bin", workdir / "ours.bin"
            plain.append(plain_copy(url, copy_target))
            copy_target.unlink()
            line = [f"plain copy {size_mb / plain[-1]:.0f} MB/s"]
            for label, checksum in (("sha256", digest.hexdigest()), ("none", "")):
                out = subprocess.run([sys.executable, __file__, "--child", url, str(our_target), checksum],
                                     capture_output=True, text=True, check=True)
                report = json.loads(out.stdout)
                our_target.unlink()
                ours[label].append(report["seconds"])
                peaks.append((report["peak_kb"] - report["idle_kb"]) / 1024)
                line.append(f"download path, checksum {label}: {size_mb / ours[label][-1]:.0f} MB/s")
            print(f"round {round_no}: " + "; ".join(line) + f"; peak RSS +{max(peaks[-2:]):.1f} MB", flush=True)
        best_plain = min(plain)
        print(f"{size_mb} MB file over loopback, best of {args.rounds}:")
        print(f"  plain streamed copy: {size_mb / best_plain:.0f} MB/s")
        for label, text in (("sha256", "verifying sha256"), ("none", "no checksum given")):
            best = min(ours[label])
            print(f"  gallery download path, {text}: {size_mb / best:.0f} MB/s, ratio to plain copy {best_plain / best:.2f}")
        print(f"  peak RSS of the download path above idle: {max(peaks):.1f} MB")
    finally:
        server.shutdown()
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":  # the checksum may be "" (none)
        child(*sys.argv[2:])
    else:
        main()
