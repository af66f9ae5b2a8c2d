"""sentence-transformers backend: embeddings from a SentenceTransformer model, and
reranking from a CrossEncoder model (a YAML with `known_usecases: [rerank]`).

Concurrent calls are batched by the worker; each batch is encoded as padded token-id
tensors, so text and token-id inputs share one path and token counts are exact."""

from __future__ import annotations

import os
from typing import Any

from localhost_ai.backends.base import Backend, register
from localhost_ai.backends.embedding_inputs import BatchingOptions, EmbeddingInputs
from localhost_ai.backends.optional import require
from localhost_ai.config import RERANK
from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.events import Scores
from localhost_ai.contract.rerank import RerankRequest

DEFAULT_BATCH = 64
DEFAULT_WAIT_MS = 5.0


@register("sentence-transformers")
class SentenceTransformersBackend(Backend):
    Options = BatchingOptions

    @property
    def reranker(self) -> bool:
        return RERANK in self.config.capabilities

    def load(self) -> None:
        # Weights come from the models folder only; never from a hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # Between batches torch's OpenMP threads would spin and take the cores the server
        # needs to answer the previous batch and gather the next (read when torch loads).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        torch, sentence_transformers = require("The sentence-transformers backend", "embeddings", "torch",
                                               "sentence_transformers")
        self.torch = torch
        torch.set_num_threads(self.config.threads or 1)
        path = str(self.config.model_path)
        self.batch, self.wait = self.options.batching(DEFAULT_BATCH, DEFAULT_WAIT_MS)
        if self.reranker:
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
        op = RerankRequest.OP if self.reranker else EmbedRequest.OP
        return {op: (self.batch, self.wait)}

    def batch_size(self, request: Any) -> int:
        return len(request.documents) if isinstance(request, RerankRequest) else len(request.inputs)

    def run_batch(self, requests: list[Any]) -> list[Any]:
        if self.reranker:
            return self._rerank(requests)
        return self.inputs.run(requests, self._encode, self.dimension, self.options.matryoshka)

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

    def _rerank(self, requests: list[RerankRequest]) -> list[Any]:
        pairs, spans = [], []
        for request in requests:
            start = len(pairs)
            pairs += [(request.query, doc) for doc in request.documents]
            spans.append((start, len(pairs)))
        logits = self.model.predict(pairs, batch_size=self.batch, activation_fn=self.identity,
                                    show_progress_bar=False, convert_to_numpy=True) if pairs else []
        tokenizer = self.model.tokenizer
        results = []
        for start, end in spans:
            tokens = sum(len(tokenizer(q, d, truncation=True)["input_ids"]) for q, d in pairs[start:end])
            results.append(Scores(scores=[float(x) for x in logits[start:end]], prompt_tokens=tokens))
        return results
