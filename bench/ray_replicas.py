"""Serving through a Ray cluster (`serve --ray`) against the local worker process, and one
single-threaded replica against two on two nodes.

    python bench/ray_replicas.py [--tokens 128] [--rounds 3] [--streams 8 16]

A Ray cluster of two nodes runs on this machine (`ray.cluster_utils`: the head, then node B),
each with a `slot` resource so that a model asking for one slot per replica gets one replica
per node.  Each replica runs 8 sequences at once (`parallel: 8`).  Printed, in this order:
  step cost    llama.cpp alone (no server), one thread: ms of one decode step of 4 rows and
               of 8, and what that allows two replicas to make of 8 streams split 4 and 4
               against one replica running all 8 in a step;
  one stream   tokens/s of one greedy stream of Gemma 3 270M (2 threads, no drafting)
               through the local worker process and through one Ray replica, the prompts
               alternating between them, and the ratio (aim: at least 0.9);
  replicas     aggregate tokens/s of N concurrent greedy streams (each of --streams) against
               one single-threaded replica and against two, one on each node (aim: at least
               1.7x).  At 16 streams each of the two replicas runs a full step of 8, as the
               one replica does; at 8 they run 4 each, and the step cost bounds the gain;
  local        the same against one and two local worker processes with no Ray: what two
               single-threaded processes make of this machine at all."""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

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


def step_costs(weights, rows: tuple[int, ...] = (4, 8), steps: int = 40) -> dict[int, float]:
    """Median ms of one llama.cpp decode step of `rows` sequences' next tokens (one thread,
    logits for every row, as a replica's engine asks), with no server around it."""
    import statistics

    import llama_cpp

    quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)  # its own process: the log is noise
    llama_cpp.llama_log_set(quiet, None)
    model = llama_cpp.llama_model_load_from_file(str(weights).encode(), llama_cpp.llama_model_default_params())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = 512 * max(rows), max(rows), False
    params.n_batch = params.n_ubatch = 512
    params.n_threads = params.n_threads_batch = 1
    ctx = llama_cpp.llama_init_from_model(model, params)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    costs = {}
    for count in rows:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        times = []
        for step in range(steps):
            for row in range(count):
                batch.token[row], batch.pos[row], batch.n_seq_id[row], batch.logits[row] = 100 + step, step, 1, True
                batch.seq_id[row][0] = row
            batch.n_tokens = count
            started = time.perf_counter()
            llama_cpp.llama_decode(ctx, batch)
            times.append(time.perf_counter() - started)
        costs[count] = statistics.median(times[5:]) * 1000
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args()

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={**NODE, "resources": {"slot": 1}, "include_dashboard": False})
    try:
        with gemma_server(SOLO) as local, gemma_server("", "--ray", cluster.address) as through_ray:
            cluster.add_node(**NODE, resources={"slot": 1})  # after the front-end joined the head's raylet
            cluster.wait_for_nodes()
            with ProcessPoolExecutor(1) as pool:  # its own process: this one's memory stays as it was
                cost = pool.submit(step_costs, local.weights).result()
            print(f"step cost, llama.cpp alone, one thread: 4 rows {cost[4]:.1f} ms, 8 rows {cost[8]:.1f} ms; "
                  f"8 streams split 4 and 4 over two replicas make at most "
                  f"{2 * 4 / cost[4] / (8 / cost[8]):.2f}x what one replica makes of them")
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

            aggregate: dict[tuple[str, int], float] = {}
            for name, replicas in (("one", 1), ("two", 2)):
                add_model(through_ray.url, through_ray.weights.parent, name, PER_NODE + f"replicas: {replicas}\n")
                through_server(through_ray.url, name, max(args.streams), 16)  # warm
                nodes = {r["node_id"][:8] for r in requests.get(f"{through_ray.url}/backend/monitor",
                                                                 params={"model": name}).json()["replicas"]}
                for streams in args.streams:
                    figures = [through_server(through_ray.url, name, streams, args.tokens)[0]
                               for _ in range(args.rounds)]
                    aggregate[name, streams] = sum(figures) / len(figures)
                    print(f"{replicas} single-threaded replica(s) on {len(nodes)} node(s), {streams} streams: "
                          f"{aggregate[name, streams]:.1f} tok/s")
                unload(through_ray.url, name)
                time.sleep(1)
            for streams in args.streams:
                print(f"{streams} streams: two replicas / one: "
                      f"{aggregate['two', streams] / aggregate['one', streams]:.2f}x")

            # The machine's own ceiling for the same work: two local worker processes (one
            # thread each) against one, no Ray at all.
            for name in ("l1", "l2"):
                add_model(local.url, local.weights.parent, name, PER_NODE)
            through_server(local.url, "l1", max(args.streams), 16)
            split_streams(local.url, ["l1", "l2"], max(args.streams), 16)
            for streams in args.streams:
                one = [through_server(local.url, "l1", streams, args.tokens)[0] for _ in range(args.rounds)]
                two = [split_streams(local.url, ["l1", "l2"], streams, args.tokens) for _ in range(args.rounds)]
                print(f"local, no Ray, {streams} streams: one single-threaded worker {sum(one) / len(one):.1f} tok/s, "
                      f"two {sum(two) / len(two):.1f} tok/s: {sum(two) / sum(one):.2f}x")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
