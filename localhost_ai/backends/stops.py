"""Stop-word matching over streamed text: text that might be the start of a stop word
is held back until it is known not to be one, so a stop word is never streamed."""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self.pending = ""
        self.stopped = False
        self.matched: str | None = None  # the stop word found, once `stopped`

    def feed(self, text: str) -> str:
        """Add generated text; return what can be sent now.  Sets `stopped` on a match."""
        self.pending += text
        hits = [(i, s) for s, i in ((s, self.pending.find(s)) for s in self.stops) if i >= 0]
        if hits:
            at, self.matched = min(hits, key=lambda hit: hit[0])
            out = self.pending[:at]
            self.pending = ""
            self.stopped = True
            return out
        hold = self._held_suffix()
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out

    def _held_suffix(self) -> int:
        """Length of the longest end of `pending` that begins some stop word."""
        best = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.pending)), best, -1):
                if self.pending.endswith(stop[:size]):
                    best = size
                    break
        return best
