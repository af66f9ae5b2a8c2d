"""sentence-transformers backend: embeddings from a SentenceTransformer model, and
reranking from a CrossEncoder model (a YAML with `known_usecases: [rerank]`).

Concurrent calls are batched by the worker; each batch is encoded as padded token-id
tensors, so text and token-id inputs share one path and token counts are exact."""

from __future__ import annotations

import os
from typing import Any

from localhost_ai.backends.base import EMBEDDINGS, RERANK, Backend, register
from localhost_ai.backends.embedding_inputs import EmbeddingInputs
from localhost_ai.backends.optional import require

DEFAULT_BATCH = 64
DEFAULT_WAIT_MS = 5.0


def is_reranker(config: dict[str, Any]) -> bool:
    return "rerank" in (config.get("known_usecases") or [])


@register("sentence-transformers")
class SentenceTransformersBackend(Backend):
    @classmethod
    def capabilities(cls, config: dict[str, Any]) -> frozenset[str]:
        return frozenset({RERANK}) if is_reranker(config) else frozenset({EMBEDDINGS})

    def load(self) -> None:
        # Weights come from the models folder only; never from a hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # Between batches torch's OpenMP threads would spin and take the cores the server
        # needs to answer the previous batch and gather the next (read when torch loads).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        torch, sentence_transformers = require("The sentence-transformers backend", "embeddings", "torch",
                                               "sentence_transformers")
        self.torch = torch
        torch.set_num_threads(self.config.get("threads") or self.defaults.get("threads") or 1)
        path = self.config["model_path"]
        self.batch = self.config.get("batch_size") or DEFAULT_BATCH
        if is_reranker(self.config):
            self.model = sentence_transformers.CrossEncoder(path, device="cpu")
            self.identity = torch.nn.Identity()
        else:
            self.model = sentence_transformers.SentenceTransformer(path, device="cpu")
            self.model.eval()
            self.inputs = EmbeddingInputs(
                tokenize=lambda texts: self.model.tokenizer(texts, add_special_tokens=True)["input_ids"],
                window=self.model.max_seq_length,
                vocab_size=len(self.model.tokenizer),
                end_token=self.model.tokenizer.sep_token_id,
            )
            dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
            self.dimension = dimension()

    def batching(self) -> dict[str, tuple[int, float]]:
        op = "rerank" if is_reranker(self.config) else "embeddings"
        wait_ms = self.config.get("batch_wait_ms")
        return {op: (self.batch, (DEFAULT_WAIT_MS if wait_ms is None else wait_ms) / 1000)}

    def batch_size(self, op: str, payload: dict[str, Any]) -> int:
        return len(payload.get("documents") or []) if op == "rerank" else len(payload.get("input") or [])

    def run_batch(self, op: str, payloads: list[dict[str, Any]]) -> list[Any]:
        if op == "embeddings":
            return self.inputs.run(payloads, self._encode, self.dimension, bool(self.config.get("matryoshka")))
        if op == "rerank":
            return self._rerank(payloads)
        raise ValueError(f"unknown batched operation {op}")

    def _encode(self, sequences: list[list[int]]):
        """Token-id sequences -> a float32 matrix, one row each, in order."""
        import numpy as np

        torch = self.torch
        tokenizer = self.model.tokenizer
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        rows = np.zeros((len(sequences), self.dimension), dtype=np.float32)
        pad = tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch):
                chunk = order[start:start + self.batch]
                width = max(len(sequences[i]) for i in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, index in enumerate(chunk):
                    seq = sequences[index]
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                features = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in tokenizer.model_input_names:
                    features["token_type_ids"] = torch.zeros_like(ids)
                out = self.model(features)["sentence_embedding"].float().cpu().numpy()
                rows[chunk] = out
        return rows

    def _rerank(self, payloads: list[dict[str, Any]]) -> list[Any]:
        pairs, spans = [], []
        for payload in payloads:
            start = len(pairs)
            pairs += [(payload["query"], doc) for doc in payload["documents"]]
            spans.append((start, len(pairs)))
        logits = self.model.predict(pairs, batch_size=self.batch, activation_fn=self.identity,
                                    show_progress_bar=False, convert_to_numpy=True) if pairs else []
        tokenizer = self.model.tokenizer
        results = []
        for payload, (start, end) in zip(payloads, spans):
            tokens = sum(len(tokenizer(q, d, truncation=True)["input_ids"]) for q, d in pairs[start:end])
            results.append({"type": "scores", "scores": [float(x) for x in logits[start:end]], "prompt_tokens": tokens})
        return results
