"""Concurrent streams on one model: this server's continuous batching against
llama-cpp-python's own server and against raw batched decoding on llama.cpp's low-level
API (the limit), all on the same Gemma 3 270M file in one run.

    python bench/concurrent_chat.py [--tokens 128] [--streams 1 4 8] [--rounds 2]

Each stream is a completion of `--tokens` tokens (greedy, a different story opening per
stream).  Printed per setup and stream count: aggregate tokens/s (all streams' tokens over
the wall time) and the mean time to first token.  llama-cpp-python's server needs its
extra: pip install 'llama-cpp-python[server]'."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from common import free_port, gemma_server, sse_chunks, wait_until_up

OPENINGS = [
    "Once upon a time, in a kingdom by the sea, there lived",
    "The old lighthouse keeper had a secret that nobody in the village",
    "In the year 2300, the last library on Earth",
    "The dragon woke up hungry, and the first thing it saw was",
    "My grandmother always told me that the forest behind our house",
    "The spaceship landed in the middle of the football match, and",
    "Nobody expected the quiet baker to become the mayor, but",
    "On the first day of winter, a strange letter arrived from",
]
THREADS = 2
CONTEXT = 1024


def one_stream(url: str, model: str, prompt: str, tokens: int) -> tuple[int, float, float]:
    """(tokens, seconds to the first token, seconds in all) of one streamed completion."""
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True}
    started = time.perf_counter()
    first = None
    count = 0
    for chunk in sse_chunks(url, "/v1/completions", body):
        if chunk.get("choices") and chunk["choices"][0].get("text"):
            first = first or time.perf_counter() - started
            count += 1  # both servers send one token's text per chunk
    return count, first or 0.0, time.perf_counter() - started


def through_server(url: str, model: str, streams: int, tokens: int) -> tuple[float, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(lambda i: one_stream(url, model, OPENINGS[i % len(OPENINGS)], tokens), range(streams)))
    wall = time.perf_counter() - started
    return sum(r[0] for r in results) / wall, statistics.mean(r[1] for r in results)


def raw_batched(weights: Path, streams: int, tokens: int) -> tuple[float, float]:
    """The limit: all streams' prompts in one batch, then one token per stream per decode,
    greedy by argmax, with no server, protocol or sampler chain in the way."""
    import llama_cpp
    import numpy as np

    model = llama_cpp.llama_model_load_from_file(str(weights).encode(), llama_cpp.llama_model_default_params())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = CONTEXT * streams, streams, False
    params.n_batch = params.n_ubatch = 512
    params.n_threads = params.n_threads_batch = THREADS
    ctx = llama_cpp.llama_init_from_model(model, params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    batch = llama_cpp.llama_batch_init(512, 0, 1)

    def tokenize(text: str) -> list[int]:
        buffer = (llama_cpp.llama_token * 256)()
        n = llama_cpp.llama_tokenize(vocab, text.encode(), len(text.encode()), buffer, 256, True, False)
        return list(buffer[:n])

    def add(i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
        batch.seq_id[i][0] = seq

    started = time.perf_counter()
    prompts = [tokenize(OPENINGS[s % len(OPENINGS)]) for s in range(streams)]
    n, rows = 0, []
    for seq, prompt in enumerate(prompts):
        for pos, token in enumerate(prompt):
            add(n, token, pos, seq, pos == len(prompt) - 1)
            n += 1
        rows.append(n - 1)
    batch.n_tokens = n
    llama_cpp.llama_decode(ctx, batch)
    positions = [len(p) for p in prompts]
    nexts = [int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, r), shape=(n_vocab,))))
             for r in rows]
    first_token = time.perf_counter() - started
    for _ in range(tokens - 1):
        for seq in range(streams):
            add(seq, nexts[seq], positions[seq], seq, True)
            positions[seq] += 1
        batch.n_tokens = streams
        llama_cpp.llama_decode(ctx, batch)
        nexts = [int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, s), shape=(n_vocab,))))
                 for s in range(streams)]
    wall = time.perf_counter() - started
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return streams * tokens / wall, first_token


def llama_cpp_python_server(weights: Path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(weights), "--n_ctx", str(CONTEXT),
         "--n_threads", str(THREADS), "--host", "127.0.0.1", "--port", str(port), "--model_alias", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, url + "/v1/models", 60, "llama-cpp-python's server did not start (is its [server] extra "
                                                   "installed?)")
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    most = max(args.streams)
    yaml = f"context_size: {CONTEXT}\nthreads: {THREADS}\nparallel: {most}\n"
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}

    def record(name: str, streams: int, figures: tuple[float, float]) -> None:
        results.setdefault((name, streams), []).append(figures)

    with gemma_server(yaml) as server:
        one_stream(server.url, "bench", "Hello", 4)  # load the model
        for _ in range(args.rounds):
            for streams in args.streams:
                record("this server", streams, through_server(server.url, "bench", streams, args.tokens))
        weights = server.weights
        other, url = llama_cpp_python_server(weights)
        try:
            one_stream(url, "bench", "Hello", 4)
            for _ in range(args.rounds):
                for streams in args.streams:
                    try:
                        record("llama-cpp-python server", streams, through_server(url, "bench", streams, args.tokens))
                    except requests.RequestException as exc:
                        print(f"llama-cpp-python server, {streams} streams: failed ({exc})")
        finally:
            other.terminate()
            other.wait(timeout=30)
        for _ in range(args.rounds):
            for streams in args.streams:
                record("raw batched llama.cpp", streams, raw_batched(weights, streams, args.tokens))

    best = {key: (max(r[0] for r in runs), statistics.mean(r[1] for r in runs)) for key, runs in results.items()}
    print(f"{'setup':26s} {'streams':>7s} {'tok/s':>8s} {'TTFT s':>8s}")
    for (name, streams), (rate, ttft) in best.items():
        print(f"{name:26s} {streams:7d} {rate:8.1f} {ttft:8.2f}")
    ours = {s: best[("this server", s)][0] for s in args.streams if ("this server", s) in best}
    raw = {s: best[("raw batched llama.cpp", s)][0] for s in args.streams if ("raw batched llama.cpp", s) in best}
    if 1 in ours:
        for s in args.streams:
            print(f"this server at {s} streams: {ours[s] / ours[1]:.2f}x its single stream, "
                  f"{ours[s] / raw[s]:.2f} of the raw batched limit")


if __name__ == "__main__":
    main()
