"""An edit whose answer mostly copies its input, greedy, with and without prompt lookup:
wall time, tokens, drafts tried and kept, and whether the two texts are the same.

    python bench/edit_lookup.py [--rounds 3]

The input is a paragraph of about 300 tokens; the instruction asks for it back with one
word changed. Two models over the same Gemma 3 270M file differ only in `prompt_lookup`;
the rounds alternate between them."""

from __future__ import annotations

import argparse
import statistics
import time

from common import gemma_server, wait_for_model

PARAGRAPH = (
    "The town council met on Tuesday evening to discuss the future of the old railway station. For more than "
    "forty years the building had stood empty at the end of the high street, its windows boarded and its clock "
    "stopped at a quarter past three. Several residents spoke in favour of turning it into a library, arguing that "
    "the nearest one was now a long bus ride away and that children in the town had nowhere quiet to study after "
    "school. Others wanted a market hall, where local farmers and bakers could sell their goods on weekends, and a "
    "small group asked for the station to be restored and reopened for trains, as it had been before the line was "
    "closed. The mayor listened to every speaker and then reminded the room that the budget was limited: whatever "
    "was chosen would have to be paid for with the grant from the county and with money raised by the town itself. "
    "In the end the council agreed to ask an architect for three plans, one for each idea, and to hold a public "
    "vote in the spring. Until then, the station would be cleaned, the roof repaired, and the clock, at last, "
    "set running again."
)
INSTRUCTION = "Rewrite the text exactly, but replace the word 'Tuesday' with 'Thursday'."
TEMPLATE = "{{ instruction }}\\n\\nText: {{ input }}\\n\\nRewritten text:"


def edit(url: str, model: str, tokens: int, request: int = 0) -> tuple[str, int, float]:
    """One edit; `request` numbers the instruction, so that no round reuses another's
    cached prompt (a reused prefix is read in other batches, which can turn a near tie)."""
    import requests

    started = time.perf_counter()
    response = requests.post(url + "/v1/edits", json={"model": model, "instruction": f"Request {request}. {INSTRUCTION}",
                                                      "input": PARAGRAPH, "temperature": 0, "max_tokens": tokens},
                             timeout=600)
    response.raise_for_status()
    body = response.json()
    return body["choices"][0]["text"], body["usage"]["completion_tokens"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=400)
    args = parser.parse_args()
    yaml = f"threads: 2\ncontext_size: 2048\nparallel: 1\ntemplate:\n  edit: \"{TEMPLATE}\"\n"
    extra = "name: plain\nparameters:\n  model: gemma.gguf\nprompt_lookup: false\n" + yaml.replace("name: bench\n", "")
    with gemma_server(yaml + "prompt_lookup: true\n") as server:
        (server.weights.parent / "plain.yaml").write_text(extra)
        import requests

        monitor = lambda name: requests.get(server.url + "/backend/monitor", params={"model": name}).json()  # noqa: E731
        edit(server.url, "bench", 8)
        wait_for_model(server.url, "plain")
        edit(server.url, "plain", 8)
        times: dict[str, list[float]] = {"bench": [], "plain": []}
        texts: dict[str, str] = {}
        produced: dict[str, int] = {}
        same = 0
        before = monitor("bench")["engine"]
        for round_ in range(1, args.rounds + 1):
            for name in ("plain", "bench"):
                text, count, seconds = edit(server.url, name, args.tokens, round_)
                times[name].append(seconds)
                texts[name] = text
                produced[name] = count
            same += texts["plain"] == texts["bench"]
        after = monitor("bench")["engine"]
    drafted = after["drafted"] - before["drafted"]
    kept = after["draft_accepted"] - before["draft_accepted"]
    plain, lookup = statistics.median(times["plain"]), statistics.median(times["bench"])
    print(f"input: {len(PARAGRAPH)} characters; answer: {produced['plain']} tokens without, {produced['bench']} with")
    print(f"without prompt lookup: {plain:.2f} s median ({produced['plain'] / plain:.1f} tok/s)")
    print(f"with prompt lookup:    {lookup:.2f} s median ({produced['bench'] / lookup:.1f} tok/s)")
    print(f"speed-up {plain / lookup:.2f}x; drafts kept {kept} of {drafted} ({kept / max(drafted, 1):.0%}); "
          f"same text in {same} of {args.rounds} rounds")
    a, b = texts["plain"], texts["bench"]
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))
    if at is not None:  # a near tie turned the other way: where, and how much was the same before it
        print(f"the texts part at character {at} of {len(a)}: {a[max(0, at - 60):at + 30]!r} / {b[at:at + 30]!r}")
    print(f"answer starts: {texts['bench'][:120]!r}")


if __name__ == "__main__":
    main()
