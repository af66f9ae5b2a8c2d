"""Stream the same completion through the server and through llama-cpp-python in-process,
on the same Gemma 3 270M file, and print tokens/s of both and their ratio.

    python bench/stream_vs_inprocess.py [--tokens 200] [--rounds 3]

Both sides run greedy decoding with the same thread count; rounds alternate between
the two so that a busy machine affects both alike."""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import gemma_server

PROMPT = "Once upon a time, in a kingdom by the sea, there lived"


def through_server(client, tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    stream = client.completions.create(
        model="bench", prompt=PROMPT, max_tokens=tokens, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    produced = 0
    for chunk in stream:
        if chunk.usage is not None:
            produced = chunk.usage.completion_tokens
    return produced, time.perf_counter() - started


def through_server_raw(url: str, tokens: int) -> tuple[int, float]:
    """The same stream read as plain SSE lines: the server's cost without the openai
    client's parsing, which shares these cores with the model."""
    import json

    import requests

    body = {"model": "bench", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    produced = 0
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith(b"data: {") and b'"usage": {' in line:
                produced = json.loads(line[6:])["usage"]["completion_tokens"]
    return produced, time.perf_counter() - started


def in_process(llm, tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    produced = 0
    for chunk in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0, stream=True):
        # one chunk per token, then a closing chunk that carries only the finish reason
        if chunk["choices"][0]["text"] or chunk["choices"][0]["finish_reason"] is None:
            produced += 1
    return produced, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    import llama_cpp
    import openai

    with gemma_server(f"context_size: 1024\nthreads: {args.threads}\n") as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="bench", max_retries=0)
        llm = llama_cpp.Llama(model_path=str(server.weights), n_ctx=1024, n_threads=args.threads, verbose=False)
        through_server(client, 8)  # load and warm both
        in_process(llm, 8)
        rates: dict[str, list[float]] = {"in-process": [], "server, openai client": [], "server, raw SSE": []}
        runs = {
            "in-process": lambda: in_process(llm, args.tokens),
            "server, openai client": lambda: through_server(client, args.tokens),
            "server, raw SSE": lambda: through_server_raw(server.url, args.tokens),
        }
        for round_no in range(1, args.rounds + 1):
            line = []
            for label, run in runs.items():
                n, seconds = run()
                rates[label].append(n / seconds)
                line.append(f"{label} {n} tokens {rates[label][-1]:.1f} tok/s")
            print(f"round {round_no}: " + "; ".join(line), flush=True)
    local = statistics.median(rates["in-process"])
    print(f"threads {args.threads}, {args.tokens} tokens, median of {args.rounds} rounds:")
    print(f"  in-process llama-cpp-python: {local:.1f} tokens/s")
    for label in ("server, openai client", "server, raw SSE"):
        remote = statistics.median(rates[label])
        print(f"  localhost-ai {label}: {remote:.1f} tokens/s, ratio to in-process {remote / local:.3f}")

if __name__ == "__main__":
    main()
