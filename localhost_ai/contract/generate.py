"""Text generation requests: chat (messages of typed content parts, tools, a response
format), completion and edit, with the sampling settings they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

from localhost_ai.config import ModelConfig
from localhost_ai.config.sampling import SAMPLING_DEFAULTS, SAMPLING_KEYS


@dataclass(frozen=True)
class TextPart:
    KIND: ClassVar[str] = "text"
    text: str


@dataclass(frozen=True)
class ImagePart:
    KIND: ClassVar[str] = "image"
    data: bytes  # the encoded file (PNG, JPEG ...)
    mime: str = ""
    label: str = ""  # where the request had it ("messages[1].content[0]"), named in errors


@dataclass(frozen=True)
class AudioPart:
    KIND: ClassVar[str] = "audio"
    data: bytes  # the encoded file (wav, mp3 ...)
    format: str = ""
    label: str = ""
    max_seconds: float = 600.0  # longer audio is refused (--max-audio-seconds)


Part = Union[TextPart, ImagePart, AudioPart]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str | None = None  # JSON text, as the model wrote it or the client sent it back
    id: str | None = None


Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: tuple[Part, ...] = ()
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # role "tool": the call this answers
    extra: dict[str, Any] = field(default_factory=dict)  # the client's other fields, which templates may read

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def media(self) -> tuple[Part, ...]:
        return tuple(part for part in self.content if not isinstance(part, TextPart))


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema of an object, valid, in contract.schemas' canonical form
    param: str = "tools"  # where the client's request declared it, named in errors


@dataclass(frozen=True)
class ResponseFormat:
    type: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None  # json_schema: known to be valid
    name: str = ""


@dataclass(frozen=True)
class Sampling:
    """The request's own sampling values; None where it leaves one to the model."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    typical_p: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    top_n_sigma: float | None = None
    xtc_probability: float | None = None
    xtc_threshold: float | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_penalty_last_n: int | None = None
    dry_sequence_breakers: tuple[str, ...] | None = None
    # (token id, a bias added to its logit); -100 bans the token.  Per request only.
    logit_bias: tuple[tuple[int, float], ...] = ()

    def resolve(self, config: ModelConfig) -> dict[str, Any]:
        """Each value from the request, else the model's YAML `parameters`, else the default."""
        own = {key: getattr(self, key) for key in SAMPLING_KEYS}
        yaml = config.parameters
        return {key: own[key] if own[key] is not None else yaml.get(key, SAMPLING_DEFAULTS[key]) for key in SAMPLING_KEYS}


@dataclass(frozen=True)
class Logprobs:
    """What a request asks of log-probabilities: each generated token's own, and this many
    of the most likely alternatives at its place (0 to 20)."""

    top: int = 0
    prompt: bool = False  # the prompt's tokens too (a completion's `echo`)


@dataclass(frozen=True)
class Generation:
    """What every text request asks of the decoding."""

    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int | None = None  # None: the YAML's `parameters.max_tokens`, else the rest of the context
    stop: tuple[str, ...] = ()
    n: int = 1  # choices per prompt
    # max_tokens is a ceiling (Anthropic's and the Responses API's): cut to what the context
    # has room for, rather than refused when the prompt leaves less.
    fit_max_tokens: bool = False
    logprobs: Logprobs | None = None  # None: none reported


@dataclass(frozen=True)
class ChatRequest:
    OP: ClassVar[str] = "chat"
    messages: tuple[Message, ...]
    generation: Generation = field(default_factory=Generation)
    tools: tuple[Tool, ...] = ()  # as declared, whatever tool_choice says
    tool_choice: Literal["auto", "required", "none"] = "auto"
    forced_tool: str | None = None  # one named tool that must be called
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    count_only: bool = False  # answer with the prompt's Usage alone: nothing is generated
    # A last assistant message (without calls) is the answer's start, which the model goes on
    # from (Anthropic's prefill); otherwise it is a finished turn like the others.
    prefill: bool = False

    @property
    def offers_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"


@dataclass(frozen=True)
class CompletionRequest:
    OP: ClassVar[str] = "completion"
    prompts: tuple[str | tuple[int, ...], ...]  # texts, or token ids read as they are
    generation: Generation = field(default_factory=Generation)
    echo: bool = False
    listed: bool = False  # the request gave its prompts as a list: errors name `prompt[i]`


@dataclass(frozen=True)
class EditRequest:
    OP: ClassVar[str] = "edit"
    instruction: str
    input: str = ""
    generation: Generation = field(default_factory=Generation)
