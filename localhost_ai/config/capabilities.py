"""What a model can do, decided in one table from its backend and YAML: the API checks
a model's capabilities before it sends it a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localhost_ai.config.model_config import ModelConfig

CHAT = "chat"
COMPLETION = "completion"
EDIT = "edit"
EMBEDDINGS = "embeddings"
RERANK = "rerank"
TRANSCRIPTION = "transcription"
IMAGE = "image"
SPEECH = "speech"
VISION = "vision"  # chat reads images (a projector that encodes them)
AUDIO_INPUT = "audio"  # chat reads audio
TOKENIZE = "tokenize"  # text to the model's token ids and back
_MEDIA_CAPABILITY = {"image": VISION, "audio": AUDIO_INPUT}  # what a projector reads -> what chat can do


@dataclass(frozen=True)
class CapabilityRule:
    """A backend's capabilities, and what LocalAI's switches in the YAML turn it into."""

    default: frozenset[str]
    embeddings: frozenset[str] | None = None  # `embeddings: true`
    rerank: frozenset[str] | None = None  # `known_usecases: [rerank]`
    grammars: bool = False  # its chat is constrained by grammars built from tool and response schemas


def _rule(default: set[str], embeddings: set[str] | None = None, rerank: set[str] | None = None,
          grammars: bool = False) -> CapabilityRule:
    return CapabilityRule(frozenset(default), frozenset(embeddings) if embeddings else None,
                          frozenset(rerank) if rerank else None, grammars)


# The built-in backends; a plugin declares its own when it registers.
TABLE: dict[str, CapabilityRule] = {
    # A llama.cpp context made for embeddings pools its output; it is not used for generation.
    "llama-cpp": _rule({CHAT, COMPLETION, EDIT, TOKENIZE}, embeddings={EMBEDDINGS, TOKENIZE}, grammars=True),
    "sentence-transformers": _rule({EMBEDDINGS}, rerank={RERANK}),
    "whisper": _rule({TRANSCRIPTION}),
    "faster-whisper": _rule({TRANSCRIPTION}),
    "diffusers": _rule({IMAGE}),
    "piper": _rule({SPEECH}),
}


def declare(backend: str, rule: CapabilityRule) -> None:
    TABLE[backend] = rule


def capabilities(config: "ModelConfig") -> frozenset[str]:
    rule = TABLE.get(config.backend)
    if rule is None:
        return frozenset()
    if config.embeddings and rule.embeddings is not None:
        return rule.embeddings
    if "rerank" in config.known_usecases and rule.rerank is not None:
        return rule.rerank
    if CHAT in rule.default and config.media:
        return rule.default | {_MEDIA_CAPABILITY[m] for m in config.media}
    return rule.default


def builds_grammars(config: "ModelConfig") -> bool:
    """Whether the model's chat turns schemas into grammars (its backend does, and the YAML
    does not turn that off with `function.grammar.disable`)."""
    rule = TABLE.get(config.backend)
    grammar = config.function.get("grammar") if isinstance(config.function, dict) else None
    return bool(rule and rule.grammars) and not (isinstance(grammar, dict) and grammar.get("disable"))
