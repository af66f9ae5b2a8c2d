"""What a backend gives back: a closed set of events, streamed from the worker as they
are produced.  Every layer above reads them by type; their `KIND` strings are read only
here and in the wire form (`wire.py`), which turns them back into events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

from localhost_ai.contract.wire import WireError, dump, load

# Why a choice ended, in the backend's terms; each API surface renders its own names.
FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class TextDelta:
    KIND: ClassVar[str] = "text"
    index: int  # the choice
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    KIND: ClassVar[str] = "tool_call"
    index: int
    call: int  # the call's position among this choice's calls
    id: str
    name: str


@dataclass(frozen=True)
class ToolArgumentsDelta:
    KIND: ClassVar[str] = "arguments"
    index: int
    call: int
    text: str


@dataclass(frozen=True)
class Finish:
    KIND: ClassVar[str] = "finish"
    index: int
    reason: FinishReason
    stop: str | None = None  # the stop word that ended it, when one did


@dataclass(frozen=True)
class Alternative:
    token: str  # its text; a piece of a UTF-8 character is written as \\x escapes
    bytes: list[int]
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    bytes: list[int]
    logprob: float | None  # None: the prompt's first token, which nothing predicts
    offset: int  # where its text starts in the choice's text (the echoed prompt's included)
    top: list[Alternative] = field(default_factory=list)  # the most likely at its place, most likely first


@dataclass(frozen=True)
class Logprobs:
    """Log-probabilities of a choice's tokens, in order.  They come before the text that
    holds those tokens; a token held back (a stop word may begin with it) comes with the
    text that releases it, and one that only made up the stop word never comes."""

    KIND: ClassVar[str] = "logprobs"
    index: int
    tokens: list[TokenLogprob]


@dataclass(frozen=True)
class Usage:
    KIND: ClassVar[str] = "usage"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None  # prompt tokens found in the prompt cache


@dataclass(frozen=True)
class Embeddings:
    """Rows of little-endian float32, `rows` x `dim`, as one blob."""

    KIND: ClassVar[str] = "embeddings"
    data: bytes
    rows: int
    dim: int
    prompt_tokens: int


@dataclass(frozen=True)
class Scores:
    KIND: ClassVar[str] = "scores"
    scores: list[float]
    prompt_tokens: int


@dataclass(frozen=True)
class Tokens:
    """A tokenization: the ids, each one's bytes when asked; or a detokenization's text."""

    KIND: ClassVar[str] = "tokens"
    tokens: list[int]
    pieces: list[list[int]] | None = None
    text: str = ""


@dataclass(frozen=True)
class TokenizerInfo:
    KIND: ClassVar[str] = "tokenizer_info"
    bos_token: str | None
    eos_token: str | None
    pad_token: str | None
    chat_template: str | None
    max_length: int  # the context a prompt has


@dataclass(frozen=True)
class Segment:
    """One stretch of a transcription, in the shape of OpenAI's verbose_json."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class Transcription:
    KIND: ClassVar[str] = "transcription"
    task: str  # transcribe | translate
    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class Images:
    """PNG files, and the seed that made them."""

    KIND: ClassVar[str] = "images"
    images: list[bytes]
    seed: int


@dataclass(frozen=True)
class Audio:
    """Speech: 16-bit little-endian mono PCM, or a file in `format` (mp3, wav ...)."""

    KIND: ClassVar[str] = "audio"
    data: bytes
    sample_rate: int
    format: str = "pcm"


Event = Union[TextDelta, ToolCallStart, ToolArgumentsDelta, Finish, Logprobs, Usage, Embeddings, Scores, Tokens,
              TokenizerInfo, Transcription, Images, Audio]
_BY_KIND: dict[str, Any] = {cls.KIND: cls for cls in Event.__args__}  # type: ignore[attr-defined]


def to_wire(event: Event) -> dict[str, Any]:
    if _BY_KIND.get(getattr(event, "KIND", None)) is not type(event):  # type: ignore[arg-type]
        raise WireError(f"a backend gave {type(event).__name__}, which is not one of the contract's events")
    return dump(event)


def from_wire(data: dict[str, Any]) -> Event:
    cls = _BY_KIND.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise WireError(f"unknown event {data.get('type')!r}")
    try:
        return load(cls, data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise WireError(f"malformed {cls.KIND} event: {exc}") from None
