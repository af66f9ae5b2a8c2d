"""Prompt templates: Jinja2 in a sandbox, so a model file cannot reach Python internals."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Used when neither the YAML nor the GGUF file gives a chat template: a plain
# transcript that base models continue sensibly.  Documented in the README.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message.role == 'system' %}{{ message.content }}\n\n"
    "{% elif message.role == 'user' %}User: {{ message.content }}\n"
    "{% else %}Assistant: {{ message.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
FALLBACK_CHAT_STOPWORDS = ["\nUser:"]
DEFAULT_COMPLETION_TEMPLATE = "{{ input }}"
DEFAULT_EDIT_TEMPLATE = "{{ instruction }}\n\n{{ input }}\n"


class PromptTemplateError(ValueError):
    """A template that does not compile or fails while rendering."""


def _raise_exception(message: str) -> None:
    raise PromptTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


_ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENV.globals["raise_exception"] = _raise_exception
_ENV.globals["strftime_now"] = _strftime_now


@lru_cache(maxsize=256)
def compile_template(source: str) -> Template:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        raise PromptTemplateError(f"template does not compile: {exc}") from None


def render(source: str, **context: Any) -> str:
    template = compile_template(source)
    try:
        return template.render(**context)
    except PromptTemplateError:
        raise
    except Exception as exc:  # a template's own bug must not crash a request
        raise PromptTemplateError(f"template failed: {exc}") from None

