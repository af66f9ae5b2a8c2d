"""Cheap limits, checked on the parsed body before anything costly walks it (schema
validation, templating, tokenizing): each refusal names the limit and its setting."""

from __future__ import annotations

import json
from typing import Any, Iterable

from localhost_ai.config import ModelConfig
from localhost_ai.config.capabilities import builds_grammars
from localhost_ai.contract.schemas import bounds_problem
from localhost_ai.errors import InvalidRequest
from localhost_ai.settings import Settings

# No tokenizer here packs more characters than this into one token on average, so a
# prompt with more characters than this many per token of context cannot fit in it.
CHARS_PER_TOKEN = 32


def refuse(what: str, count: int, limit: int, flag: str, param: str, code: str) -> None:
    if count > limit:
        raise InvalidRequest(f"This request has {count:,} {what}; this server takes at most {limit:,} ({flag}).",
                             param=param, code=code)


def _items(value: Any) -> list[Any]:
    """A field's list, or none when it is not one (the schema refuses it after)."""
    return value if isinstance(value, list) else []


def check_text(body: dict[str, Any], limits: Settings) -> None:
    """What every text route counts: its stop words."""
    for field in ("stop", "stop_words"):
        refuse("stop words", len(_items(body.get(field))), limits.max_stop_words, "--max-stop-words", field,
                "too_many_stop_words")


def check_chat(body: dict[str, Any], limits: Settings) -> None:
    messages = _items(body.get("messages"))
    refuse("messages", len(messages), limits.max_messages, "--max-messages", "messages", "too_many_messages")
    parts = sum(len(_items(m.get("content"))) for m in messages if isinstance(m, dict))
    refuse("content parts", parts, limits.max_content_parts, "--max-content-parts", "messages", "too_many_parts")
    for field in ("tools", "functions"):
        refuse("tools", len(_items(body.get(field))), limits.max_tools, "--max-tools", field, "too_many_tools")
    check_text(body, limits)
    for schema, param in _schemas(body):
        size = len(json.dumps(schema))
        if size > limits.max_schema_size:
            raise InvalidRequest(f"The JSON Schema at '{param}' is {size:,} bytes; this server takes at most "
                                 f"{limits.max_schema_size:,} (--max-schema-size).", param=param,
                                 code="schema_too_large")


def _schemas(body: dict[str, Any]) -> list[tuple[Any, str]]:
    """The JSON Schemas a chat request carries, each with its place."""
    schemas: list[tuple[Any, str]] = []
    for i, tool in enumerate(_items(body.get("tools"))):
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            schemas.append((tool["function"].get("parameters"), f"tools[{i}].function.parameters"))
    for i, function in enumerate(_items(body.get("functions"))):
        if isinstance(function, dict):
            schemas.append((function.get("parameters"), f"functions[{i}].parameters"))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"), dict):
        schemas.append((response_format["json_schema"].get("schema"), "response_format.json_schema.schema"))
    return [(schema, param) for schema, param in schemas if schema is not None]


def check_grammar_bounds(body: dict[str, Any], config: ModelConfig) -> None:
    """For a model that builds grammars from schemas: each within what a grammar may spell
    out, refused here before the model's worker sees the request (which checks again)."""
    if not builds_grammars(config):
        return
    for schema, param in _schemas(body):
        problem = bounds_problem(schema)
        if problem:
            raise InvalidRequest(f"The JSON Schema at '{param}': {problem}.", param=param, code="schema_too_complex")


def check_embeddings(body: dict[str, Any], limits: Settings) -> None:
    inputs = body.get("input")
    count = len(_items(inputs)) if _items(inputs) and not isinstance(inputs[0], int) else 0
    refuse("inputs", count, limits.max_embedding_inputs, "--max-embedding-inputs", "input", "too_many_inputs")


def check_rerank(body: dict[str, Any], limits: Settings) -> None:
    refuse("documents", len(_items(body.get("documents"))), limits.max_rerank_documents, "--max-rerank-documents",
            "documents", "too_many_documents")


def strings(value: Any) -> Iterable[str]:
    """Every string in a parsed JSON value, keys included: all of it may reach a template."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def check_fits(texts: Iterable[str], config: ModelConfig, default_context: int, param: str) -> None:
    """Text that cannot fit in the model's context is refused before it is templated or tokenized
    (`texts`: everything the prompt is made of, tool calls, names and tool schemas included)."""
    context = config.context_size or default_context
    limit = context * CHARS_PER_TOKEN
    total = 0
    for text in texts:
        total += len(text)
        if total > limit:
            raise InvalidRequest(
                f"This request's text is over {limit:,} characters, more than model '{config.name}' can read: its "
                f"context is {context:,} tokens (context_size), and no token holds more than {CHARS_PER_TOKEN} "
                "characters on average.", param=param, code="context_length_exceeded")


# Log-probability entries (each token and each alternative) one answer may carry, at most:
# they are built into JSON on the event loop.
MAX_LOGPROB_ENTRIES = 1 << 20


def check_logprobs(choices: int, top: int | None, config: ModelConfig, default_context: int, param: str) -> None:
    """`choices` answers of up to the context's tokens each, every token with `top` alternatives."""
    if top is None:
        return
    context = config.context_size or default_context
    entries = choices * (top + 1) * context
    if entries > MAX_LOGPROB_ENTRIES:
        raise InvalidRequest(
            f"{choices} choices x {top + 1} log-probabilities x model '{config.name}''s {context:,}-token context "
            f"could be {entries:,} entries, more than this server builds into one answer "
            f"({MAX_LOGPROB_ENTRIES:,}); ask for fewer alternatives, fewer choices or fewer prompts.",
            param=param, code="too_many_logprobs")

