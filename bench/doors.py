"""One streamed 128-token answer from the same model through four doors: OpenAI's chat
completions, OpenAI's Responses API, Anthropic's Messages API and Ollama's /api/chat;
tokens per second and the time to the first text of each, and the others' ratios to chat.

    python bench/doors.py [--tokens 128] [--rounds 5]

Greedy decoding, so every door streams the same tokens; rounds go through the doors in
turn so that a busy machine affects them alike.  The streams are read as raw SSE (or
NDJSON) lines, so a client library's parsing is not what is measured."""

from __future__ import annotations

import argparse
import json
import statistics
import time

import requests

from common import gemma_server

MESSAGES = [{"role": "user", "content": "Once upon a time, in a kingdom by the sea, there lived"}]
# The base model continues the text as it is (no turn markers), so it writes the whole 128 tokens.
YAML = 'context_size: 2048\ntemplate:\n  chat: "{% for m in messages %}{{ m.content }}{% endfor %}"\n'


def _stream(url: str, path: str, body: dict, text_of, tokens_of) -> tuple[int, float, float]:
    """(tokens, seconds to the end, seconds to the first text) of one streamed answer."""
    started = time.perf_counter()
    first = None
    tokens = 0
    with requests.post(url + path, json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith(b"{"):  # NDJSON
                event = json.loads(line)
            elif line.startswith(b"data: {"):
                event = json.loads(line[6:])
            else:
                continue
            if first is None and text_of(event):
                first = time.perf_counter() - started
            tokens = tokens_of(event) or tokens
    return tokens, time.perf_counter() - started, first or float("nan")


def chat(url: str, tokens: int) -> tuple[int, float, float]:
    body = {"model": "bench", "messages": MESSAGES, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    return _stream(url, "/v1/chat/completions", body,
                   lambda e: e["choices"] and e["choices"][0]["delta"].get("content"),
                   lambda e: (e.get("usage") or {}).get("completion_tokens"))


def responses(url: str, tokens: int) -> tuple[int, float, float]:
    body = {"model": "bench", "input": MESSAGES, "max_output_tokens": tokens, "temperature": 0, "stream": True,
            "store": False}
    return _stream(url, "/v1/responses", body,
                   lambda e: e["type"] == "response.output_text.delta" and e["delta"],
                   lambda e: e["type"] in ("response.completed", "response.incomplete")
                   and e["response"]["usage"]["output_tokens"])


def messages(url: str, tokens: int) -> tuple[int, float, float]:
    body = {"model": "bench", "messages": MESSAGES, "max_tokens": tokens, "temperature": 0, "stream": True}
    return _stream(url, "/v1/messages", body,
                   lambda e: e["type"] == "content_block_delta" and e["delta"].get("text"),
                   lambda e: e["type"] == "message_delta" and e["usage"]["output_tokens"])


def ollama(url: str, tokens: int) -> tuple[int, float, float]:
    body = {"model": "bench", "messages": MESSAGES, "options": {"num_predict": tokens, "temperature": 0}}
    return _stream(url, "/api/chat", body, lambda e: not e["done"] and e["message"]["content"],
                   lambda e: e["done"] and e["eval_count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    doors = {"chat completions": chat, "responses": responses, "messages": messages, "ollama chat": ollama}
    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in doors}
    with gemma_server(YAML, "--threads", "2") as server:
        chat(server.url, 8)  # loaded, and its prompt cached alike for every door after
        for round_ in range(args.rounds):
            line = []
            for name, door in doors.items():
                produced, seconds, first = door(server.url, args.tokens)
                results[name].append((produced, seconds, first))
                line.append(f"{name} {produced / seconds:.1f} tok/s, first text {first * 1000:.0f} ms")
            print(f"round {round_ + 1}: " + "; ".join(line), flush=True)
    print(f"{args.tokens}-token streamed answers, median of {args.rounds} rounds:")
    base = statistics.median(p / s for p, s, _ in results["chat completions"])
    for name, runs in results.items():
        rate = statistics.median(p / s for p, s, _ in runs)
        first = statistics.median(f for _, _, f in runs)
        tokens = {p for p, _, _ in runs}
        print(f"  {name}: {rate:.1f} tokens/s ({'/'.join(map(str, sorted(tokens)))} tokens), ratio {rate / base:.3f}; "
              f"first text at {first * 1000:.0f} ms")


if __name__ == "__main__":
    main()
