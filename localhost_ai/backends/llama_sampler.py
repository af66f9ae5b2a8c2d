"""One sequence's sampler on llama.cpp's low-level API, with an optional grammar.

A grammar is applied the way llama.cpp's own server does it: the token is first picked
without the grammar, and only when the grammar rejects it is the whole vocabulary
filtered and the pick made again.  Filtering 262k candidates on every step is what
makes naive constrained decoding slow; most picks are already allowed.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

# llama_token_data: {int32 id; float logit; float p}
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

# On a grammar rejection the grammar is first tried on this many best candidates only.
SHORTLIST = 256

# How many recent tokens the repeat/frequency/presence penalties look at (llama.cpp's default).
PENALTY_WINDOW = 64


def _init_penalties(llama_cpp: Any) -> Any:
    """llama.cpp's `llama_sampler_init_penalties(int32 last_n, float repeat, float freq,
    float present)`, declared here: the binding still declares an older signature with a
    leading n_vocab, which only works where ints and floats travel in separate registers."""
    global _PENALTIES
    if _PENALTIES is None:
        prototype = ctypes.CFUNCTYPE(llama_cpp.llama_sampler_chain_init.restype, ctypes.c_int32, ctypes.c_float, ctypes.c_float, ctypes.c_float)
        _PENALTIES = prototype(("llama_sampler_init_penalties", llama_cpp.llama_cpp._lib))
    return _PENALTIES


_PENALTIES: Any = None


class GrammarError(ValueError):
    """llama.cpp refused the grammar text."""


class Sampler:
    """Penalties, top-k, top-p, min-p, temperature and a seeded draw (or greedy at
    temperature 0), plus a grammar when one is given.  Free it with close()."""

    def __init__(self, llama_cpp: Any, vocab: Any, n_vocab: int, settings: dict[str, Any], seed: int,
                 grammar: str | None = None) -> None:
        self._lib = llama_cpp
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self.grammar = None
        add = lambda sampler: llama_cpp.llama_sampler_chain_add(self.chain, sampler)  # noqa: E731
        penalised = settings["repeat_penalty"] != 1.0 or settings["frequency_penalty"] or settings["presence_penalty"]
        if penalised:
            add(_init_penalties(llama_cpp)(
                PENALTY_WINDOW, settings["repeat_penalty"], settings["frequency_penalty"], settings["presence_penalty"]))
        if settings["temperature"] <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            add(llama_cpp.llama_sampler_init_top_k(settings["top_k"]))
            add(llama_cpp.llama_sampler_init_top_p(settings["top_p"], 1))
            add(llama_cpp.llama_sampler_init_min_p(settings["min_p"], 1))
            add(llama_cpp.llama_sampler_init_temp(settings["temperature"]))
            # 0xFFFFFFFF is llama.cpp's "pick a random seed".
            add(llama_cpp.llama_sampler_init_dist(min(seed & 0xFFFFFFFF, 0xFFFFFFFE)))
        if grammar is not None:
            self.grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not self.grammar:
                self.grammar = None
                self.close()
                raise GrammarError("llama.cpp could not parse the grammar")
        self.n_vocab = n_vocab
        # Greedy with no penalties is the arg-max, which needs no copy of the logits.
        self._argmax = settings["temperature"] <= 0 and not penalised
        # A shortlist pick equals a full pick when it holds as many allowed tokens as the
        # chain keeps (one when greedy, top_k otherwise).
        top_k = settings["top_k"]
        self._needed = 1 if settings["temperature"] <= 0 else (top_k if 0 < top_k <= SHORTLIST else None)
        if settings["presence_penalty"] < 0 or settings["frequency_penalty"] < 0 or settings["repeat_penalty"] < 1:
            self._needed = None  # penalties that raise logits could lift a token into the shortlist
        self._shortlist = np.zeros(min(SHORTLIST, n_vocab), dtype=_TOKEN_DATA)
        self._short = self._view(self._shortlist)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._cells = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self._all = self._view(self._cells)
        self._single = self._view(self._one)
        self.grammar_rejections = 0

    def _view(self, cells: np.ndarray) -> Any:
        lib = self._lib
        data = cells.ctypes.data_as(ctypes.POINTER(lib.llama_token_data))
        return lib.llama_token_data_array(data=data, size=len(cells), selected=-1, sorted=False)

    def sample(self, ctx: Any, index: int = -1) -> int:
        """Pick the next token from the logits of batch row `index` and accept it."""
        lib = self._lib
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        token = int(np.argmax(logits)) if self._argmax else self._pick(logits, constrained=False)
        if self.grammar is not None and not self._allowed(token, logits):
            self.grammar_rejections += 1
            token = self._pick_from_shortlist(logits)
            if token is None:
                token = self._pick(logits, constrained=True)
        if self.grammar is not None:
            lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.chain, token)
        return token

    def _pick(self, logits: np.ndarray, constrained: bool) -> int:
        lib = self._lib
        self._cells["id"] = self._ids
        self._cells["logit"] = logits
        self._cells["p"] = 0.0
        array = self._all
        array.data = self._cells.ctypes.data_as(ctypes.POINTER(lib.llama_token_data))
        array.size, array.selected, array.sorted = self.n_vocab, -1, False
        if constrained:
            lib.llama_sampler_apply(self.grammar, ctypes.byref(array))
        lib.llama_sampler_apply(self.chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _pick_from_shortlist(self, logits: np.ndarray) -> int | None:
        if self._needed is None:
            return None
        lib = self._lib
        size = len(self._shortlist)
        best = np.argpartition(logits, -size)[-size:]
        self._shortlist["id"] = best
        self._shortlist["logit"] = logits[best]
        self._shortlist["p"] = 0.0
        array = self._short
        array.data = self._shortlist.ctypes.data_as(ctypes.POINTER(lib.llama_token_data))
        array.size, array.selected, array.sorted = size, -1, False
        lib.llama_sampler_apply(self.grammar, ctypes.byref(array))
        allowed = int(np.isfinite(self._shortlist["logit"]).sum())  # the grammar works in place
        if allowed < self._needed:
            return None
        lib.llama_sampler_apply(self.chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _allowed(self, token: int, logits: np.ndarray) -> bool:
        lib = self._lib
        self._one[0] = (token, logits[token], 0.0)
        single = self._single
        single.data = self._one.ctypes.data_as(ctypes.POINTER(lib.llama_token_data))
        single.size, single.selected, single.sorted = 1, -1, False
        lib.llama_sampler_apply(self.grammar, ctypes.byref(single))
        return bool(np.isfinite(single.data[0].logit))

    def close(self) -> None:
        lib = self._lib
        for name in ("grammar", "chain"):
            sampler = getattr(self, name, None)
            if sampler:
                lib.llama_sampler_free(sampler)
            setattr(self, name, None)
