"""This server against llama.cpp's own C++ `llama-server`, in one run, on the same Gemma 3
270M file: aggregate tokens/s and mean time to first token at 1, 4 and 8 concurrent
128-token greedy streams (a different story opening per stream).

    python bench/vs_llama_server.py --llama-server PATH [--tokens 128] [--streams 1 4 8] [--rounds 3]

`llama-server` is built from the llama.cpp source that llama-cpp-python vendors, with the
CPU flags the README's install gives llama-cpp-python, so both sides run the same llama.cpp
with the same kernels (a native build picks instructions this machine's CPU reports but
faults on: "Illegal instruction" at the first decode):

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz && cd llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -B build -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
        -DGGML_F16C=ON -DGGML_BMI2=ON
    cmake --build build --target llama-server -j2        # build/bin/llama-server, about 12 minutes

Both run 8 slots of 1,024 tokens on 2 threads (`-np 8 -c 8192 -t 2`; here `parallel: 8`,
`context_size: 1024`, `threads: 2`). Both servers stay up for the whole run and the rounds
alternate between them, so a busy moment of the machine falls on both alike; each figure
is the best round's tokens/s and the mean of the rounds' first-token times."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
from pathlib import Path

from common import free_port, gemma_server, wait_until_up
from concurrent_chat import one_stream, through_server

THREADS = 2
SLOTS = 8
CONTEXT = 1024


def start_llama_server(binary: Path, weights: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "-m", str(weights), "-np", str(SLOTS), "-c", str(SLOTS * CONTEXT), "-t", str(THREADS),
         "--host", "127.0.0.1", "--port", str(port), "--alias", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, url + "/health", 120, f"llama-server did not start (exit code {process.poll()})")
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", type=Path, default=Path(os.environ.get("LLAMA_SERVER", "llama-server")))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--yaml", default="", help="more lines for this server's model file, e.g. 'prompt_lookup: true'")
    args = parser.parse_args()
    yaml = f"context_size: {CONTEXT}\nthreads: {THREADS}\nparallel: {SLOTS}\n" + args.yaml.replace("\\n", "\n") + "\n"
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with gemma_server(yaml) as ours:
        theirs, their_url = start_llama_server(args.llama_server, ours.weights)
        try:
            sides = {"this server": ours.url, "llama-server": their_url}
            for url in sides.values():
                one_stream(url, "bench", "Hello", 4)  # loaded and warm
            for _ in range(args.rounds):
                for streams in args.streams:
                    for name, url in sides.items():
                        results.setdefault((name, streams), []).append(
                            through_server(url, "bench", streams, args.tokens))
        finally:
            theirs.terminate()
            theirs.wait(timeout=30)
    print(f"{'streams':>7s} {'this tok/s':>10s} {'TTFT s':>7s} {'llama-server tok/s':>18s} {'TTFT s':>7s} "
          f"{'tok/s ratio':>11s} {'TTFT ratio':>10s}")
    for streams in args.streams:
        mine, other = results[("this server", streams)], results[("llama-server", streams)]
        rate, ttft = max(r[0] for r in mine), statistics.mean(r[1] for r in mine)
        their_rate, their_ttft = max(r[0] for r in other), statistics.mean(r[1] for r in other)
        print(f"{streams:7d} {rate:10.1f} {ttft:7.3f} {their_rate:18.1f} {their_ttft:7.3f} "
              f"{rate / their_rate:11.2f} {ttft / their_ttft:10.2f}")


if __name__ == "__main__":
    main()
