"""Drafts for speculative decoding: tokens a sequence is likely to write next, which the
engine decodes together with its next token and keeps as far as the target model's own
sampling agrees with them.

Prompt lookup needs no second model: the last few tokens are looked up earlier in the
sequence (its prompt and what it wrote), and what followed them there is the draft.  It
pays where an answer repeats its input: edits, code changes, extraction.

A draft model (YAML `draft_model`, LocalAI's field) is a smaller model with the same
vocabulary, decoded greedily in a context of its own with a KV stream per slot, kept in
step with each sequence's text."""

from __future__ import annotations

import logging
from typing import Any, Hashable, Sequence

import numpy as np

log = logging.getLogger(__name__)


class PromptLookup:
    """n-gram drafting over one sequence's tokens.  Each n-gram (n from `n_min` to `n_max`)
    is indexed once, by where its most recent occurrence ended, so a draft costs a dict
    lookup per n, not a scan of the history."""

    free = True  # a draft costs a few dict lookups: the engine may weigh how many to verify after making them

    def __init__(self, n_min: int = 2, n_max: int = 3) -> None:
        self.n_min, self.n_max = n_min, n_max
        self._ends: dict[tuple[Hashable, ...], int] = {}
        self._indexed = 0  # grams ending before this index are in `_ends`

    def draft(self, history: Sequence[Hashable], most: int, seq_id: int = 0) -> list[int]:
        """Up to `most` tokens that followed the latest earlier occurrence of the history's
        last n tokens (the longest n that has one); media cells end a draft."""
        size = len(history)
        # A gram is indexed once a token follows it: one ending at `end` continues at history[end].
        for end in range(max(self._indexed, self.n_min), size):
            for n in range(self.n_min, min(self.n_max, end) + 1):
                self._ends[tuple(history[end - n:end])] = end
        self._indexed = max(self._indexed, size)
        for n in range(min(self.n_max, size), self.n_min - 1, -1):
            end = self._ends.get(tuple(history[size - n:]))
            if end is None:
                continue
            out: list[int] = []
            for token in history[end:end + most]:
                if not isinstance(token, int):
                    break
                out.append(token)
            if out:
                return out
        return []


class DraftModel:
    """A draft model's own context: one KV stream per slot of the engine, each holding a
    prefix of its sequence's text.  `draft` brings the stream up to the sequence's text
    (its last token included) and writes `most` tokens greedily.  Used from the engine's
    thread only."""

    def __init__(self, llama_cpp: Any, model: Any, context_per_slot: int, slots: int, threads: int | None,
                 n_batch: int = 512) -> None:
        self.lib = llama_cpp
        self.n_batch = n_batch
        self.context_per_slot = context_per_slot
        from localhost_ai.backends.llama_engine import slotted_context

        self.ctx = slotted_context(llama_cpp, model, context_per_slot, slots, threads, n_batch, "the draft model")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.cells: list[list[int]] = [[] for _ in range(slots)]  # what each stream holds
        self.tokens_decoded = 0

    def draft(self, history: Sequence[Hashable], most: int, seq_id: int = 0) -> list[int]:
        if any(not isinstance(token, int) for token in history):
            return []  # an image or audio: the draft model reads none
        cells = self.cells[seq_id]
        keep = 0
        for held, token in zip(cells, history[:-1]):  # the last token is fed again: its logits are wanted
            if held != token:
                break
            keep += 1
        if keep < len(cells) and not self.lib.llama_memory_seq_rm(self.memory, seq_id, keep, -1):
            self.lib.llama_memory_seq_rm(self.memory, seq_id, 0, -1)
            keep = 0
        del cells[keep:]
        if len(history) + most > self.context_per_slot:
            return []
        self._feed(seq_id, list(history[keep:]))  # type: ignore[arg-type]
        out: list[int] = []
        while True:
            token = int(np.argmax(np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, -1),
                                                        shape=(self.n_vocab,))))
            out.append(token)
            if len(out) == most:
                return out
            self._feed(seq_id, [token])

    def _feed(self, seq_id: int, tokens: list[int]) -> None:
        """Decode `tokens` after the stream's cells, in batches; logits for the last only."""
        cells = self.cells[seq_id]
        for start in range(0, len(tokens), self.n_batch):
            piece = tokens[start:start + self.n_batch]
            batch = self.batch
            for i, token in enumerate(piece):
                batch.token[i] = token
                batch.pos[i] = len(cells) + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq_id
                batch.logits[i] = start + i == len(tokens) - 1
            batch.n_tokens = len(piece)
            if self.lib.llama_decode(self.ctx, batch) != 0:
                raise RuntimeError("the draft model's llama_decode failed")
            cells.extend(piece)
            self.tokens_decoded += len(piece)

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None
