"""A sequence's log-probabilities as the contract's Logprobs events, released in step with
its text: a token whose text the stop-word matcher holds back is reported when that text
is sent, and one whose text only made up the stop word is never reported, unless every
token is (`everything`: a prompt being scored, where a scorer counts positions)."""

from __future__ import annotations

import codecs
import collections
from typing import Callable

from localhost_ai.contract.events import Alternative, Logprobs, TokenLogprob

# A token's log-probability, and the top alternatives' ids and log-probabilities (the sampler's `last`).
Scored = tuple[float, list[int], list[float]]


def token_text(piece: bytes) -> str:
    """A token's text; a token holding part of a UTF-8 character shows its bytes as escapes."""
    return piece.decode("utf-8", errors="backslashreplace")


class Report:
    """One choice's tokens in order.  `piece(id)` is a token's bytes as logprobs show it;
    `offset`: characters of the choice's text before the first generated token (the echo)."""

    def __init__(self, index: int, piece: Callable[[int], bytes], offset: int = 0, everything: bool = False) -> None:
        self.index = index
        self.everything = everything
        self.piece = piece
        self.offset = offset
        self.decoded = 0  # characters the generated tokens have decoded to
        self.released = 0  # of those, the characters the stop-word matcher has let through
        self.held: collections.deque[tuple[TokenLogprob, int]] = collections.deque()  # (entry, its start)

    def entry(self, token: int, scored: Scored | None, offset: int) -> TokenLogprob:
        piece = self.piece(token)
        if scored is None:
            return TokenLogprob(token_text(piece), list(piece), None, offset)
        logprob, ids, values = scored
        top = []
        for alternative, value in zip(ids, values):
            raw = self.piece(alternative)
            top.append(Alternative(token_text(raw), list(raw), value))
        return TokenLogprob(token_text(piece), list(piece), logprob, offset, top)

    def prompt(self, tokens: list[int], scores: list[Scored], pieces: list[bytes]) -> Logprobs:
        """The prompt's own tokens: the first unscored, each other by the one before it.
        `pieces`: each prompt token's bytes as the echoed text spells it."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        entries = []
        at = 0
        for i, token in enumerate(tokens):
            entry = self.entry(token, scores[i - 1] if i else None, at)
            entries.append(entry)
            at += len(decoder.decode(pieces[i]))
        return Logprobs(self.index, entries)

    def add(self, token: int, scored: Scored | None, chars: int) -> None:
        """A generated token, whose bytes decoded to `chars` characters."""
        self.held.append((self.entry(token, scored, self.offset + self.decoded), self.decoded))
        self.decoded += chars

    def release(self, chars: int, stopped: bool = False, final: bool = False) -> Logprobs | None:
        """The matcher let `chars` more characters through: the tokens now wholly sent; on a
        stop, those partly sent, and the rest dropped; at the end, all."""
        self.released += chars
        out = []
        while self.held:
            entry, start = self.held[0]
            end = self.held[1][1] if len(self.held) > 1 else self.decoded
            if end <= self.released or final or (stopped and (start < self.released or self.everything)):
                out.append(self.held.popleft()[0])
            else:
                break
        if stopped:
            self.held.clear()
        return Logprobs(self.index, out) if out else None
