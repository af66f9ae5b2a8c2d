"""How long LocalAI's whole gallery index takes to load as a gallery: read (YAML with its
anchors and merge keys) and every entry checked, as `/models/available` does on a cold cache.

    python bench/gallery_index.py [--rounds 5] [--index PATH]

PATH defaults to the copy the tests serve (tests/gallery/localai/index.yaml.gz, LocalAI's
gallery/index.yaml, 2.4 MB, 1,709 entries). Also timed, for comparison: the same read with
PyYAML's pure-Python loader, which the server used before."""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
from pathlib import Path

import yaml

from localhost_ai.gallery.index import _read_index

DEFAULT = Path(__file__).parents[1] / "tests" / "gallery" / "localai" / "index.yaml.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--index", type=Path, default=DEFAULT)
    args = parser.parse_args()
    data = args.index.read_bytes()
    if args.index.suffix == ".gz":
        data = gzip.decompress(data)
    timings, entries, problems = [], [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        entries, problems = _read_index(data, "localai")
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    yaml.load(data, Loader=yaml.SafeLoader)  # noqa: S506 (the safe loader)
    pure = time.perf_counter() - started
    print(f"{len(data) / 1e6:.1f} MB, {len(entries)} entries offered, {len(problems)} refused")
    print(f"load and check: median {statistics.median(timings):.2f} s (min {min(timings):.2f}, max {max(timings):.2f}) "
          f"over {args.rounds} rounds")
    print(f"PyYAML's pure-Python loader alone, for comparison: {pure:.2f} s")


if __name__ == "__main__":
    main()
