"""Drafts for speculative decoding: tokens a sequence is likely to write next, which the
engine decodes together with its next token and keeps as far as the target model's own
sampling agrees with them.

Prompt lookup needs no second model: the last few tokens are looked up earlier in the
sequence (its prompt and what it wrote), and what followed them there is the draft.  It
pays where an answer repeats its input: edits, code changes, extraction."""

from __future__ import annotations

from typing import Hashable, Sequence


class PromptLookup:
    """n-gram drafting over one sequence's tokens.  Each n-gram (n from `n_min` to `n_max`)
    is indexed once, by where its most recent occurrence ended, so a draft costs a dict
    lookup per n, not a scan of the history."""

    def __init__(self, n_min: int = 2, n_max: int = 3) -> None:
        self.n_min, self.n_max = n_min, n_max
        self._ends: dict[tuple[Hashable, ...], int] = {}
        self._indexed = 0  # grams ending before this index are in `_ends`

    def draft(self, history: Sequence[Hashable], most: int) -> list[int]:
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
