"""Tokenization requests: a text into a model's token ids, and ids back into text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class TokenizeRequest:
    OP: ClassVar[str] = "tokenize"
    content: str
    add_special: bool = False  # the BOS token the model's prompts begin with
    parse_special: bool = True  # "<start_of_turn>" written in the text is that one token
    with_pieces: bool = False  # each token's bytes too


@dataclass(frozen=True)
class DetokenizeRequest:
    OP: ClassVar[str] = "detokenize"
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class TokenizerInfoRequest:
    """The model's special tokens and chat template, as vLLM's /tokenizer_info gives them."""

    OP: ClassVar[str] = "tokenizer_info"
