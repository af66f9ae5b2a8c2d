"""lm-evaluation-harness against the real server: its `local-completions` model scores a
multiple-choice task (tests/evals, data shipped there) by log-likelihood, tokenizing on
the server (/tokenizer_info, /tokenize: it detects them itself) and asking
/v1/completions for the echoed prompt's log-probabilities.  Each item's log-likelihood is
checked against llama-cpp-python's logits for the same tokens in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lm_eval")
llama_cpp = pytest.importorskip("llama_cpp")

TASKS = Path(__file__).resolve().parent.parent / "evals"


def in_process(llm, context: str, continuation: str) -> tuple[float, bool]:
    """The continuation's log-likelihood and whether greedy decoding would write it, the way
    lm-eval splits the pair into tokens (the context's, then the rest of the whole's),
    decoded as the server decodes a scored prompt: in one batch, every row's logits."""
    def tokens(text: str) -> list[int]:
        return llm.tokenize(text.encode(), add_bos=False, special=True)

    context_tokens = tokens(context)
    whole = tokens(context + continuation)
    llm.reset()
    llm.eval(whole)
    total, greedy = 0.0, True
    for i in range(len(context_tokens), len(whole)):
        logits = np.asarray(llm.scores[i - 1], dtype=np.float64)
        peak = logits.max()
        total += logits[whole[i]] - (peak + np.log(np.exp(logits - peak).sum()))
        greedy = greedy and int(np.argmax(logits)) == whole[i]
    return total, greedy


def test_lm_eval_scores_a_multiple_choice_task(gemma_server, gemma_gguf, tmp_path):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    args = f"base_url={gemma_server.base_url}/completions,model=gemma,num_concurrent=1,max_retries=1"
    run = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", args,
                          "--include_path", ".", "--tasks", "capitals", "--log_samples", "--output_path",
                          str(tmp_path)], cwd=TASKS, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "remote tokenizer" in run.stderr.lower()  # it tokenized on this server, found by itself
    samples = [json.loads(line) for path in tmp_path.rglob("samples_capitals_*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(samples) == 8
    llm = llama_cpp.Llama(str(gemma_gguf), n_ctx=512, n_threads=2, logits_all=True, flash_attn=True, verbose=False)
    try:
        correct = 0
        for sample in samples:
            scores = []
            for args_, (response,) in zip(sample["arguments"].values(), sample["resps"]):
                likelihood, greedy = in_process(llm, args_["arg_0"], args_["arg_1"])
                assert float(response[0]) == pytest.approx(likelihood, abs=1e-4), args_
                assert response[1] == str(greedy)
                scores.append(likelihood)
            assert sample["acc"] == float(int(np.argmax(scores)) == sample["doc"]["answer"])
            correct += sample["acc"]
    finally:
        llm.close()
    results = json.loads(next(tmp_path.rglob("results_*.json")).read_text())
    assert results["results"]["capitals"]["acc,none"] == pytest.approx(correct / len(samples))
    assert correct >= 5  # the model knows most of these
