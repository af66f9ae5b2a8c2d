"""Decoding speed with log-probabilities against without: one streamed 128-token greedy
completion each way, in turn, for several rounds; tokens per second of each and the ratio.

    python bench/logprobs.py [--tokens 128] [--rounds 5] [--top 5]

With `logprobs: N` every generated token is scored over the whole vocabulary (262,144
tokens for Gemma 3: a log-softmax and the N best), which is the extra work measured here.
The rates are over the whole stream (first token to last), read as raw SSE lines."""

from __future__ import annotations

import argparse
import json
import statistics
import time

import requests

from common import gemma_server

PROMPT = "Once upon a time, in a kingdom by the sea, there lived"


def run(url: str, tokens: int, top: int | None) -> tuple[int, float]:
    """(tokens, seconds) of one streamed completion; `top`: its logprobs (None: none)."""
    body = {"model": "bench", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if top is not None:
        body["logprobs"] = top
    started = time.perf_counter()
    produced = scored = 0
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith(b"data: {"):
                continue
            event = json.loads(line[6:])
            for choice in event["choices"]:
                scored += len((choice.get("logprobs") or {}).get("tokens") or [])
            produced = (event.get("usage") or {}).get("completion_tokens") or produced
    seconds = time.perf_counter() - started
    if top is not None and scored != produced:
        raise SystemExit(f"{scored} tokens came with log-probabilities, of {produced}")
    return produced, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    ways = {"without": None, f"logprobs {args.top}": args.top}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    with gemma_server("context_size: 2048\n", "--threads", "2") as server:
        run(server.url, 8, None)  # loaded, and the prompt cached alike for both after
        for round_ in range(args.rounds):
            line = []
            for name, top in ways.items():
                produced, seconds = run(server.url, args.tokens, top)
                rates[name].append(produced / seconds)
                line.append(f"{name} {produced / seconds:.1f} tok/s ({produced} tokens)")
            print(f"round {round_ + 1}: " + "; ".join(line), flush=True)
    base = statistics.median(rates["without"])
    print(f"{args.tokens}-token streamed completions, median of {args.rounds} rounds:")
    for name, runs in rates.items():
        rate = statistics.median(runs)
        print(f"  {name}: {rate:.1f} tokens/s, ratio {rate / base:.3f}")


if __name__ == "__main__":
    main()
