"""Serving through a Ray cluster (`serve --ray`) against the local worker process, and one
single-threaded replica against two on two nodes.

    python bench/ray_replicas.py [--tokens 128] [--rounds 3] [--streams 8]

A Ray cluster of two nodes runs on this machine (`ray.cluster_utils`: the head, then node B),
each with a `slot` resource so that a model asking for one slot per replica gets one replica
per node.  Printed:
  one stream   tokens/s of one greedy stream of Gemma 3 270M (2 threads, no drafting)
               through the local worker process and through one Ray replica, the prompts
               alternating between them, and the ratio (aim: at least 0.9);
  replicas     aggregate tokens/s of `--streams` concurrent greedy streams against one
               single-threaded replica and against two, one on each node (aim: at least 1.7x);
  local        the same against one and two local worker processes with no Ray: what two
               single-threaded processes make of this machine at all;
  memory read  GB/s one process reads alone and two together: decoding reads the weights
               every step, so this, not the cores, bounds a second replica here.
The order printed: memory read, one stream, replicas, local."""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy
import requests
from ray.cluster_utils import Cluster

from common import gemma_server, wait_for_model
from concurrent_chat import OPENINGS, one_stream, through_server

NODE = {"num_cpus": 2, "object_store_memory": 80 << 20}
SOLO = "threads: 2\nprompt_lookup: false\ncontext_size: 1024\nresources: {num_cpus: 2}\n"
PER_NODE = "threads: 1\nprompt_lookup: false\ncontext_size: 1024\nparallel: 8\nresources: {num_cpus: 1, custom: {slot: 1}}\n"


def add_model(url: str, folder, name: str, yaml: str) -> None:
    (folder / f"{name}.yaml").write_text(f"name: {name}\nparameters:\n  model: gemma.gguf\n{yaml}")
    wait_for_model(url, name)
    response = requests.post(f"{url}/backend/load", json={"model": name}, timeout=300)
    response.raise_for_status()


def unload(url: str, name: str) -> None:
    requests.post(f"{url}/backend/shutdown", json={"model": name}, timeout=60).raise_for_status()


def stream_rate(url: str, model: str, prompt: str, tokens: int) -> float:
    count, first, total = one_stream(url, model, prompt, tokens)
    return (count - 1) / (total - first)


def split_streams(url: str, models: list[str], streams: int, tokens: int) -> float:
    """Aggregate tokens/s of `streams` concurrent streams, dealt out over `models` in turn."""
    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        counts = list(pool.map(lambda i: one_stream(url, models[i % len(models)], OPENINGS[i % len(OPENINGS)],
                                                    tokens)[0], range(streams)))
    return sum(counts) / (time.perf_counter() - started)


def _read_memory(seconds: float = 4.0) -> float:
    """GB/s one process reads out of a 256 MiB array (more than any cache here)."""
    data = numpy.ones((256 << 20) // 8)
    started, passes = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        data.sum()
        passes += 1
    return passes * data.nbytes / (time.perf_counter() - started) / 1e9


def memory_bandwidth() -> tuple[float, float]:
    """GB/s read by one process alone, and by two at once (their sum): decoding reads the
    weights once a step, so this bounds what a second replica on the machine can add."""
    with ProcessPoolExecutor(2) as pool:
        alone = pool.submit(_read_memory).result()
        together = sum(pool.map(_read_memory, [4.0, 4.0]))
    return alone, together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=8)
    args = parser.parse_args()

    alone, together = memory_bandwidth()
    print(f"memory read: one process {alone:.1f} GB/s, two at once {together:.1f} GB/s ({together / alone:.2f}x)")
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={**NODE, "resources": {"slot": 1}, "include_dashboard": False})
    try:
        with gemma_server(SOLO) as local, gemma_server("", "--ray", cluster.address) as through_ray:
            cluster.add_node(**NODE, resources={"slot": 1})  # after the front-end joined the head's raylet
            cluster.wait_for_nodes()
            add_model(through_ray.url, through_ray.weights.parent, "solo", SOLO)
            for url in (local.url, through_ray.url):  # warm: the first prompt of a model is slower
                one_stream(url, "bench" if url == local.url else "solo", OPENINGS[0], 16)

            rates: dict[str, list[float]] = {"local": [], "ray": []}
            for n in range(args.rounds * 4):
                prompt = OPENINGS[n % len(OPENINGS)]
                rates["local"].append(stream_rate(local.url, "bench", prompt, args.tokens))
                rates["ray"].append(stream_rate(through_ray.url, "solo", prompt, args.tokens))
            local_rate = sum(rates["local"]) / len(rates["local"])
            ray_rate = sum(rates["ray"]) / len(rates["ray"])
            print(f"one stream: local worker {local_rate:.1f} tok/s, one Ray replica {ray_rate:.1f} tok/s, "
                  f"ratio {ray_rate / local_rate:.2f}")
            unload(through_ray.url, "solo")
            unload(local.url, "bench")

            aggregate = {}
            for name, replicas in (("one", 1), ("two", 2)):
                add_model(through_ray.url, through_ray.weights.parent, name, PER_NODE + f"replicas: {replicas}\n")
                through_server(through_ray.url, name, args.streams, 16)  # warm
                figures = [through_server(through_ray.url, name, args.streams, args.tokens)[0]
                           for _ in range(args.rounds)]
                aggregate[name] = sum(figures) / len(figures)
                nodes = {r["node_id"][:8] for r in requests.get(f"{through_ray.url}/backend/monitor",
                                                                 params={"model": name}).json()["replicas"]}
                print(f"{replicas} single-threaded replica(s) on {len(nodes)} node(s), {args.streams} streams: "
                      f"{aggregate[name]:.1f} tok/s")
                unload(through_ray.url, name)
                time.sleep(1)
            print(f"two replicas / one: {aggregate['two'] / aggregate['one']:.2f}x")

            # The machine's own ceiling for the same work: two local worker processes (one
            # thread each) against one, no Ray at all.
            for name in ("l1", "l2"):
                add_model(local.url, local.weights.parent, name, PER_NODE)
            through_server(local.url, "l1", args.streams, 16)
            one = [through_server(local.url, "l1", args.streams, args.tokens)[0] for _ in range(args.rounds)]
            two = [split_streams(local.url, ["l1", "l2"], args.streams, args.tokens) for _ in range(args.rounds)]
            print(f"local, no Ray: one single-threaded worker {sum(one) / len(one):.1f} tok/s, two "
                  f"{sum(two) / len(two):.1f} tok/s: {sum(two) / sum(one):.2f}x")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
