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

from localhost_ai.backends.llama_logprobs import Scored

# llama_token_data: {int32 id; float logit; float p}
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

# On a grammar rejection the grammar is first tried on this many best candidates only.
SHORTLIST = 256

# A bias of -100 (the lowest) bans its token, as OpenAI documents it: the logit becomes -inf.
BAN = -100.0

# The log-probability reported for a banned token (JSON has no -inf); OpenAI's own floor.
LOGPROB_FLOOR = -9999.0


class GrammarError(ValueError):
    """llama.cpp refused the grammar text."""


class NothingAllowed(ValueError):
    """The logit bias bans every token the grammar allows next."""


class Sampler:
    """llama.cpp's own samplers in llama.cpp's order: penalties, DRY, top-n-sigma, top-k,
    typical-p, top-p, min-p, XTC, temperature and a seeded draw (greedy at temperature 0),
    or Mirostat in place of the truncations; the logit bias before them all, and a grammar
    when one is given.  With `top_logprobs` set, each pick is scored as `last`.  Free it
    with close()."""

    def __init__(self, llama_cpp: Any, vocab: Any, n_vocab: int, settings: dict[str, Any], seed: int,
                 grammar: str | None = None, logit_bias: tuple[tuple[int, float], ...] = (),
                 top_logprobs: int | None = None, context: int = 4096) -> None:
        self._lib = llama_cpp
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self.grammar = None
        self.n_vocab = n_vocab
        add = lambda sampler: llama_cpp.llama_sampler_chain_add(self.chain, sampler)  # noqa: E731
        seed = min(seed & 0xFFFFFFFF, 0xFFFFFFFE)  # 0xFFFFFFFF is llama.cpp's "pick a random seed"
        temperature = settings["temperature"]
        # A window longer than the context looks at nothing more (and llama.cpp allocates it whole).
        window = settings["repeat_last_n"]
        window = context if window < 0 else min(window, context)
        penalised = window > 0 and (settings["repeat_penalty"] != 1.0 or settings["frequency_penalty"] != 0
                                    or settings["presence_penalty"] != 0)
        self.window = window if penalised else 0  # the prompt tokens the penalties and DRY look back on
        if penalised:
            add(llama_cpp.llama_sampler_init_penalties(n_vocab, window, settings["repeat_penalty"],
                                                       settings["frequency_penalty"], settings["presence_penalty"]))
        dry = settings["dry_multiplier"] > 0
        if dry:
            breakers = [b.encode("utf-8") for b in settings["dry_sequence_breakers"]]
            array = (ctypes.c_char_p * max(1, len(breakers)))(*breakers)
            last_n = context if settings["dry_penalty_last_n"] < 0 else min(settings["dry_penalty_last_n"], context)
            self.window = max(self.window, last_n)
            add(llama_cpp.llama_sampler_init_dry(vocab, settings["dry_multiplier"], settings["dry_base"],
                                                 settings["dry_allowed_length"], last_n, array, len(breakers)))
        mirostat = settings["mirostat"]
        typical = settings["typical_p"] < 1.0
        xtc = settings["xtc_probability"] > 0 and settings["xtc_threshold"] <= 0.5  # above 0.5 XTC does nothing
        sigma = settings["top_n_sigma"] > 0
        if mirostat:
            add(llama_cpp.llama_sampler_init_temp(temperature))
            tau, eta = settings["mirostat_tau"], settings["mirostat_eta"]
            add(llama_cpp.llama_sampler_init_mirostat(n_vocab, seed, tau, eta, 100) if mirostat == 1
                else llama_cpp.llama_sampler_init_mirostat_v2(seed, tau, eta))
        else:
            # At temperature 0 what keeps the best token (top-k, top-p, min-p, top-n-sigma)
            # changes nothing and is left out; what may remove it is kept.
            if sigma and temperature > 0:
                add(llama_cpp.llama_sampler_init_top_n_sigma(settings["top_n_sigma"]))
            if temperature > 0:
                add(llama_cpp.llama_sampler_init_top_k(settings["top_k"]))
            if typical:
                add(llama_cpp.llama_sampler_init_typical(settings["typical_p"], 1))
            if temperature > 0:
                add(llama_cpp.llama_sampler_init_top_p(settings["top_p"], 1))
                add(llama_cpp.llama_sampler_init_min_p(settings["min_p"], 1))
            if xtc:
                add(llama_cpp.llama_sampler_init_xtc(settings["xtc_probability"], settings["xtc_threshold"], 1, seed))
            if temperature <= 0:
                add(llama_cpp.llama_sampler_init_greedy())
            else:
                add(llama_cpp.llama_sampler_init_temp(temperature))
                add(llama_cpp.llama_sampler_init_dist(seed))
        if grammar is not None:
            self.grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not self.grammar:
                self.grammar = None
                self.close()
                raise GrammarError("llama.cpp could not parse the grammar")
        # Greedy with nothing that changes the best token is the arg-max, which needs no copy of the logits.
        self._argmax = temperature <= 0 and not (penalised or dry or typical or xtc or mirostat)
        # A shortlist pick equals a full pick when it holds as many allowed tokens as the
        # chain keeps (one when greedy, top_k otherwise), and nothing in the chain reads the
        # whole distribution (typical-p, XTC, top-n-sigma and Mirostat do).
        top_k = settings["top_k"]
        self._needed = 1 if temperature <= 0 else (top_k if 0 < top_k <= SHORTLIST else None)
        if settings["presence_penalty"] < 0 or settings["frequency_penalty"] < 0 or settings["repeat_penalty"] < 1:
            self._needed = None  # penalties that raise logits could lift a token into the shortlist
        if typical or xtc or sigma or mirostat or dry:  # these read the whole distribution, or move logits
            self._needed = None
        self._bias_ids = np.array([token for token, _ in logit_bias], dtype=np.int64)
        self._bias = np.array([-np.inf if bias <= BAN else bias for _, bias in logit_bias], dtype=np.float32)
        self._biased = np.zeros(n_vocab, dtype=np.float32) if logit_bias else None
        self.top_logprobs = top_logprobs
        self.last: Scored | None = None
        self._scratch: np.ndarray | None = None
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

    def prime(self, tokens: list[Any]) -> None:
        """The prompt's last tokens into the penalties' and DRY's window (not the grammar's),
        as llama.cpp's server does: a repeat of the prompt counts as a repeat.  Media cells
        (not token ids) are left out."""
        if self.window <= 0:
            return
        for token in tokens[-self.window:]:
            if isinstance(token, int):
                self._lib.llama_sampler_accept(self.chain, token)

    def logits(self, ctx: Any, index: int) -> np.ndarray:
        """Batch row `index`'s logits, with the logit bias added (a view of llama.cpp's
        buffer when there is none: read it before the next decode)."""
        logits = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        if self._biased is None:
            return logits
        np.copyto(self._biased, logits)
        self._biased[self._bias_ids] += self._bias
        return self._biased

    def score(self, logits: np.ndarray, token: int, top: int) -> Scored:
        """`token`'s log-probability under `logits` (a log-softmax over the whole vocabulary),
        and the `top` most likely tokens' ids and log-probabilities, most likely first."""
        peak = float(logits.max())
        if self._scratch is None:
            self._scratch = np.empty(self.n_vocab, dtype=np.float32)
        np.subtract(logits, peak, out=self._scratch)
        np.exp(self._scratch, out=self._scratch)
        norm = peak + float(np.log(self._scratch.sum(dtype=np.float64)))
        ids: list[int] = []
        values: list[float] = []
        if top:
            best = np.argpartition(logits, -top)[-top:]
            best = best[np.argsort(-logits[best], kind="stable")]
            ids = best.tolist()
            values = [max(value, LOGPROB_FLOOR) for value in (logits[best].astype(np.float64) - norm).tolist()]
        return max(float(logits[token]) - norm, LOGPROB_FLOOR), ids, values

    def sample(self, ctx: Any, index: int = -1) -> int:
        """Pick the next token from the logits of batch row `index` and accept it."""
        lib = self._lib
        logits = self.logits(ctx, index)
        token = int(np.argmax(logits)) if self._argmax else self._pick(logits, constrained=False)
        if self.grammar is not None and not self._allowed(token, logits):
            self.grammar_rejections += 1
            token = self._pick_from_shortlist(logits)
            if token is None:
                token = self._pick(logits, constrained=True)
            # With every allowed token banned, the pick is one the grammar refuses, and
            # accepting it would abort llama.cpp.
            if not np.isfinite(logits[token]) or not self._allowed(token, logits):
                raise NothingAllowed("the logit bias bans every token the grammar allows next")
        if self.grammar is not None:
            lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.chain, token)
        if self.top_logprobs is not None:
            self.last = self.score(logits, token, self.top_logprobs)
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
