"""Prompt templates: Jinja2 in a sandbox, so a model file cannot reach Python internals,
and bounded, so that one cannot hold a process either: nothing is computed while a
template compiles, arithmetic that would build huge numbers or strings is refused, and a
render stops at a time and output-size limit."""

from __future__ import annotations

import ctypes
import functools
import re
import threading
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, TypeVar

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


# A render's limits: the longest prompt any model here reads is far shorter.
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
RENDER_SECONDS = 5.0
# The largest number arithmetic in a template may make, in bits, and the largest string
# or list it may repeat into.
_MAX_BITS = 64 * 1024
_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")  # printf-style, `%(name)9s` too
_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")  # str.format's `{:>9}`


def _raise_exception(message: str) -> None:
    raise PromptTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 64


def _too_big(operator: str, left: Any, right: Any) -> bool:
    sizable = (str, list, tuple)
    if operator == "**":
        return isinstance(left, int) and isinstance(right, int) and right > 0 and _bits(left) * right > _MAX_BITS
    if operator == "*":
        if isinstance(left, int) and isinstance(right, sizable):
            left, right = right, left
        if isinstance(left, sizable) and isinstance(right, int):
            return len(left) * right > MAX_OUTPUT_CHARS
        return isinstance(left, int) and isinstance(right, int) and _bits(left) + _bits(right) > _MAX_BITS
    if operator == "%" and isinstance(left, str):
        return _wide_printf(left)
    return False


def _wide_printf(text: str) -> bool:
    return any(part == "*" or (part and int(part) > MAX_OUTPUT_CHARS)
               for match in _WIDTH.finditer(text) for part in match.groups())


def _wide_format(text: str) -> bool:
    return any(int(number) > MAX_OUTPUT_CHARS for spec in _SPEC.findall(text) for number in re.findall(r"\d+", spec))


def _check_arguments(args: tuple, kwargs: dict[str, Any]) -> None:
    """A number past the output bound given to a filter or method (`|center(10**9)`,
    `.ljust(10**9)`) would build a huge string in one step, which no timeout interrupts."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_OUTPUT_CHARS:
            raise PromptTemplateError(f"the template asks for something too large ({value:,})")


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps Jinja's pass_context marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        texts = [value for value in args if isinstance(value, str)]
        if name == "format" and texts and _wide_printf(texts[0]):
            raise PromptTemplateError("the template formats something too large ('format')")
        if name == "replace" and len(texts) >= 3:
            text, old, new = texts[:3]
            if len(text) + (text.count(old) if old else len(text) + 1) * max(0, len(new) - len(old)) > MAX_OUTPUT_CHARS:
                raise PromptTemplateError("the template builds something too large ('replace')")
        return function(*args, **kwargs)

    return guarded


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Arithmetic that would take long or build something huge is refused while rendering
    (`3**(10**7)`, `'a' * 10**9`, `'%999999999d' % 1`); the optimizer, which would compute
    constant arithmetic while the template compiles, is off."""

    intercepted_binops = frozenset({"**", "*", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if _too_big(operator, left, right):
            raise PromptTemplateError(f"the template computes something too large ({operator!r})")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's names)
        _check_arguments(args, kwargs)
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)  # the sandbox wraps str.format
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in ("format", "format_map") and _wide_format(owner):
            raise PromptTemplateError("the template formats something too large ('format')")
        return super().call(__context, __obj, *args, **kwargs)


_ENV = _BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, optimized=False)
_ENV.filters = {name: _guarded(name, function) for name, function in _ENV.filters.items()}
_ENV.globals["raise_exception"] = _raise_exception
_ENV.globals["strftime_now"] = _strftime_now


@lru_cache(maxsize=256)
def compile_template(source: str) -> Template:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        raise PromptTemplateError(f"template does not compile: {exc}") from None
    except (RecursionError, MemoryError):
        raise PromptTemplateError("template does not compile: it is nested too deeply") from None


class _Timeout(BaseException):
    """Raised inside a render that ran out of time (a BaseException, so that no
    `except Exception` in between swallows it)."""


T = TypeVar("T")


def _set_async_exc(thread_id: int, exc: Any) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


_REFIRE_SECONDS = 0.05
_bounded = threading.local()  # a `within` runs on this thread: the ones inside it run under its time


def within(seconds: float, work: Callable[[], T]) -> T:
    """`work()`, interrupted when it runs longer than `seconds`: a template's loops are
    Python code, which a pending exception stops between two of its steps. Inside another
    `within`, the outer one's time bounds it (a chat's many templates share one limit)."""
    if getattr(_bounded, "active", False):
        return work()
    _bounded.active = True
    try:
        return _within(seconds, work)
    finally:
        _bounded.active = False


def _within(seconds: float, work: Callable[[], T]) -> T:
    thread_id = threading.get_ident()
    lock = threading.Lock()
    ended = threading.Event()
    state = {"done": False, "fired": False}

    def watch() -> None:
        # Raised again until the work has ended: Python discards an exception raised in a
        # finalizer that the garbage collector runs on this thread (and code may catch it).
        if ended.wait(seconds):
            return
        while True:
            with lock:
                if state["done"]:
                    return
                state["fired"] = True
                _set_async_exc(thread_id, _Timeout)
            if ended.wait(_REFIRE_SECONDS):
                return

    watcher = threading.Thread(target=watch, name="template-time-limit", daemon=True)
    try:
        try:
            watcher.start()  # inside: a stop that comes before start() returns is caught too
            return work()
        finally:
            with lock:
                state["done"] = True
                if state["fired"]:
                    _set_async_exc(thread_id, None)  # not delivered yet: it is not for the code after
            ended.set()
    except _Timeout:
        raise PromptTemplateError(f"rendering took longer than {seconds:g} seconds") from None


def _render_bounded(template: Template, context: dict[str, Any]) -> str:
    out: list[str] = []
    size = 0
    for piece in template.generate(**context):
        size += len(piece)
        if size > MAX_OUTPUT_CHARS:
            raise PromptTemplateError(f"the rendered prompt is longer than {MAX_OUTPUT_CHARS:,} characters")
        out.append(piece)
    return "".join(out)


def render(source: str, **context: Any) -> str:
    template = compile_template(source)
    try:
        return within(RENDER_SECONDS, lambda: _render_bounded(template, context))
    except PromptTemplateError:
        raise
    except (RecursionError, MemoryError):
        raise PromptTemplateError("template failed: it recursed too deeply or needed too much memory") from None
    except Exception as exc:  # a template's own bug must not crash a request
        raise PromptTemplateError(f"template failed: {exc}") from None



_PROBE = "zq7probe"


@lru_cache(maxsize=64)
def reads_typed_content(source: str) -> bool:
    """Whether a chat template reads a message's content as a list of typed parts
    (`{% for part in message.content %}{% if part.type == 'text' %}...`), as several
    vision models' own templates do, rather than as a string: told by rendering a probe
    message both ways, as llama.cpp's server does.  Such a template given a string
    renders nothing of it."""
    def shows(content: Any) -> bool:
        try:
            return _PROBE in render(source, messages=[{"role": "user", "content": content}], add_generation_prompt=True,
                                    bos_token="", eos_token="", system_prompt="", tools=None)
        except PromptTemplateError:
            return False

    return not shows(_PROBE) and shows([{"type": "text", "text": _PROBE}])
