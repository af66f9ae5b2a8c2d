"""Prompt lookup as it is by default (a request alone in its model drafts as many tokens as
pay at the measured cost of a step's rows) against none at all (`prompt_lookup: false`),
one request at a time, on text that repeats itself and on text that does not.

    python bench/lookup_default.py [--tokens 128] [--rounds 2]

Workloads, each over eight prompts:
  greedy   story openings at temperature 0 (a small base model soon repeats itself);
  sampled  the same openings at temperature 1.0, top_p 0.95 (little repeats);
  chat     questions through the chat template at temperature 0.7.
Two models over the same Gemma 3 270M file differ only in `prompt_lookup`; each prompt goes
to one and then the other, so a busy moment of the machine falls on both alike.  Printed per
workload: tokens/s of each (all tokens over all the time), their ratio, and the drafts the
default verified and kept."""

from __future__ import annotations

import argparse
import time

import requests

from common import gemma_server, wait_for_model
from concurrent_chat import OPENINGS

QUESTIONS = [
    "What is the capital of France, and what is it known for?",
    "Explain in a few sentences how a bicycle stays upright.",
    "Give me three tips for learning to cook.",
    "Why is the sky blue?",
    "Write a short poem about the sea.",
    "What should I pack for a weekend of hiking?",
    "How do plants make their food?",
    "Describe a good morning routine.",
]
WORKLOADS = {
    "greedy": ("/v1/completions", OPENINGS, {"temperature": 0}),
    "sampled": ("/v1/completions", OPENINGS, {"temperature": 1.0, "top_p": 0.95}),
    "chat": ("/v1/chat/completions", QUESTIONS, {"temperature": 0.7}),
}


def run(url: str, model: str, path: str, prompt: str, settings: dict, tokens: int) -> tuple[int, float]:
    body = {"model": model, "max_tokens": tokens, **settings}
    body.update({"messages": [{"role": "user", "content": prompt}]} if "chat" in path else {"prompt": prompt})
    started = time.perf_counter()
    response = requests.post(url + path, json=body, timeout=600)
    response.raise_for_status()
    return response.json()["usage"]["completion_tokens"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    yaml = "threads: 2\ncontext_size: 1024\n"
    with gemma_server(yaml) as server:
        (server.weights.parent / "plain.yaml").write_text(
            "name: plain\nparameters:\n  model: gemma.gguf\nprompt_lookup: false\n" + yaml)
        wait_for_model(server.url, "plain")
        for name in ("bench", "plain"):
            run(server.url, name, "/v1/completions", "Hello", {"temperature": 0}, 4)  # loaded and warm

        def engine() -> dict:
            return requests.get(server.url + "/backend/monitor", params={"model": "bench"}).json()["engine"]

        print(f"{'workload':>8s} {'default tok/s':>13s} {'off tok/s':>9s} {'ratio':>5s} {'drafted':>7s} {'kept':>5s}")
        for workload, (path, prompts, settings) in WORKLOADS.items():
            totals = {"bench": [0, 0.0], "plain": [0, 0.0]}
            before = engine()
            for round_ in range(args.rounds):
                for i, prompt in enumerate(prompts):
                    order = ("bench", "plain") if (i + round_) % 2 == 0 else ("plain", "bench")
                    for name in order:
                        count, seconds = run(server.url, name, path, prompt, settings, args.tokens)
                        totals[name][0] += count
                        totals[name][1] += seconds
            after = engine()
            mine, off = (totals[n][0] / totals[n][1] for n in ("bench", "plain"))
            drafted = after["drafted"] - before["drafted"]
            kept = after["draft_accepted"] - before["draft_accepted"]
            print(f"{workload:>8s} {mine:13.1f} {off:9.1f} {mine / off:5.2f} {drafted:7d} {kept:5d}")


if __name__ == "__main__":
    main()
