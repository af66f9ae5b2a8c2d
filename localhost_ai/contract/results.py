"""A text generation's events gathered into the one result every API surface renders."""

from __future__ import annotations

from dataclasses import dataclass, field

from localhost_ai.contract.events import (
    Event,
    Finish,
    FinishReason,
    Logprobs,
    TextDelta,
    TokenLogprob,
    ToolArgumentsDelta,
    ToolCallStart,
    Usage,
)


@dataclass
class CallResult:
    id: str
    name: str
    arguments: str = ""


@dataclass
class GenerationResult:
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, FinishReason] = field(default_factory=dict)
    calls: dict[int, list[CallResult]] = field(default_factory=dict)
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    stops: dict[int, str] = field(default_factory=dict)  # the stop word that ended a choice
    logprobs: dict[int, list[TokenLogprob]] = field(default_factory=dict)

    def take(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self.texts[event.index] = self.texts.get(event.index, "") + event.text
        elif isinstance(event, Finish):
            self.finish[event.index] = event.reason
            self.texts.setdefault(event.index, "")
            if event.stop is not None:
                self.stops[event.index] = event.stop
        elif isinstance(event, ToolCallStart):
            self.calls.setdefault(event.index, []).append(CallResult(event.id, event.name))
        elif isinstance(event, ToolArgumentsDelta):
            self.calls[event.index][event.call].arguments += event.text
        elif isinstance(event, Logprobs):
            self.logprobs.setdefault(event.index, []).extend(event.tokens)
        elif isinstance(event, Usage):
            self.usage = event

    def text(self, index: int) -> str:
        return self.texts.get(index, "")

    def reason(self, index: int) -> FinishReason:
        return self.finish.get(index, "stop")
