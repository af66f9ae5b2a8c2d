"""The server's own memory with no model loaded and with Gemma 3 270M loaded: the
weights live in the worker process, so the server should barely grow.

    python bench/server_memory.py"""

from __future__ import annotations

import requests

from common import gemma_server


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def main() -> None:
    with gemma_server("context_size: 2048\n") as server:
        url = server.url
        for _ in range(20):  # warm the request path with no model loaded
            requests.get(url + "/v1/models", timeout=5)
            requests.post(url + "/v1/completions", json={"model": "none", "prompt": "x"}, timeout=5)
        idle = rss_mb(server.process.pid)
        for _ in range(5):
            requests.post(url + "/v1/completions", json={"model": "bench", "prompt": "Hello", "max_tokens": 32}, timeout=120)
        loaded = rss_mb(server.process.pid)
        worker = rss_mb(requests.get(url + "/backend/monitor?model=bench", timeout=5).json()["pid"])
    print(f"server RSS, no model loaded:       {idle:7.1f} MB")
    print(f"server RSS, gemma loaded and used:  {loaded:7.1f} MB  (+{loaded - idle:.1f} MB)")
    print(f"worker RSS (holds the weights):     {worker:7.1f} MB")


if __name__ == "__main__":
    main()
