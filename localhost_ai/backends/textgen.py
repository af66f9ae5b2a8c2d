"""Text generation above a text model: the prompt from the model's templates (chat,
completion, edit), tools told to the model, and tool calls read back from its output.
A text backend provides the decoding (`TextModel`); everything here is the same for
any of them."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterator, Protocol

from localhost_ai.backends import tool_prompt
from localhost_ai.backends.base import CallControl
from localhost_ai.backends.tool_calls import CallShaper
from localhost_ai.backends.tool_prompt import FunctionSettings, ToolUse
from localhost_ai.config import ModelConfig
from localhost_ai.config.go_prompts import (
    GO, JINJA, LOCALAI_NO_ACTION_PARAMETERS, GoPrompts, go_template, multimodal_content, prompt_data,
)
from localhost_ai.config.gotemplate import TemplateError
from localhost_ai.config.templates import (
    DEFAULT_COMPLETION_TEMPLATE,
    DEFAULT_EDIT_TEMPLATE,
    FALLBACK_CHAT_STOPWORDS,
    FALLBACK_CHAT_TEMPLATE,
    RENDER_SECONDS,
    PromptTemplateError,
    reads_typed_content,
    render,
    within,
)
from localhost_ai.contract.events import Event, Finish, TextDelta, Usage
from localhost_ai.contract.generate import (
    AudioPart,
    ChatRequest,
    CompletionRequest,
    EditRequest,
    Generation,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
)
from localhost_ai.errors import InvalidRequest

log = logging.getLogger(__name__)


class TextModel(Protocol):
    """What a text backend gives this layer."""

    chat_template: str | None  # the model file's own, if it has one
    bos_text: str
    eos_text: str
    media_marker: str | None  # the text that stands for an image or audio part in a prompt; None: reads none

    def check_constraints(self, request: ChatRequest) -> None:
        """Refuse (InvalidRequest, naming the field) tool or response schemas that the
        model's constrained decoding cannot enforce."""

    def grammar(self, use: ToolUse | None, response_format: ResponseFormat | None) -> Any:
        """A constraint that makes the model write the calls or the format (None: none)."""

    def decode(self, prompts: list[str | tuple[int, ...]], generation: Generation, cancel: CallControl, *,
               stops: list[str], echo: bool = False, lstrip: bool = False, grammar: Any = None,
               param: str = "messages", media: tuple[Part, ...] = (), listed: bool = False,
               copies_input: bool = False) -> Iterator[Event]:
        """Each prompt `generation.n` times: text deltas (after the log-probabilities of
        their tokens, when asked), a finish for each choice, then usage.  A prompt of token
        ids is read as it is.  `lstrip`: a choice starts at its first visible character;
        `param`: the request field the prompts came from, named when one is too long
        (`param[i]` when `listed`); `media`: the image and audio parts the (one) prompt's
        markers stand for, in order."""

    def count(self, prompt: str, media: tuple[Part, ...], param: str) -> int:
        """The prompt's tokens (its media's included), as `decode` would read them."""


def template_message(message: Message, marker: str | None = None) -> dict[str, Any]:
    """A message as chat templates read it: content as text (with `marker` where each image
    or audio part was, as llama.cpp's server does), absent fields left out."""
    text = "".join(part.text if isinstance(part, TextPart) else marker or "" for part in message.content)
    out: dict[str, Any] = {**message.extra, "role": message.role, "content": text}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            function = {"name": call.name}
            if call.arguments is not None:
                function["arguments"] = call.arguments
            calls.append({**({"id": call.id} if call.id is not None else {}), "type": "function", "function": function})
        out["tool_calls"] = calls
    return out


def _shaped(events: Iterator[Event], shaper: Callable[[int], CallShaper]) -> Iterator[Event]:
    """The output read as tool calls: each choice's text through its own CallShaper."""
    shapers: dict[int, CallShaper] = {}
    for event in events:
        if isinstance(event, TextDelta):
            yield from shapers.setdefault(event.index, shaper(event.index)).feed(event.text)
        elif isinstance(event, Finish):
            shape = shapers.setdefault(event.index, shaper(event.index))
            yield from shape.finish()
            yield Finish(event.index, "tool_calls") if shape.calls and event.reason == "stop" else event
        else:
            yield event


class TextGeneration:
    def __init__(self, config: ModelConfig, model: TextModel) -> None:
        self.config = config
        self.model = model
        templates = config.templates
        chat = templates.get("chat") or model.chat_template
        self.chat_stopwords = [] if chat else list(FALLBACK_CHAT_STOPWORDS)
        self.chat_template = chat or FALLBACK_CHAT_TEMPLATE
        syntax = config.template_syntax
        # LocalAI's Go templates: the chat is assembled as LocalAI assembles it. A function
        # template is used only in the chat template's own syntax.
        go = syntax.get("chat") == GO or ("chat" not in templates and "chat_message" in templates)
        function = templates.get("function") if syntax.get("function") == (GO if go else JINJA) else None
        self.function_template = None if go else function
        if go:
            self.chat_stopwords = []  # LocalAI adds none of its own
        self.functions = FunctionSettings.from_config(config)
        self.go_chat = GoPrompts(
            chat=templates.get("chat"), chat_message=templates.get("chat_message"), function=function,
            roles=dict(config.roles), join=config.join_chat_messages, system_prompt=config.system_prompt or "",
        ) if go else None

    def _prompt(self, kind: str, prompt: str) -> str:
        log.debug("model %s: %s prompt %s", self.config.name, kind, json.dumps(prompt, ensure_ascii=False))
        return prompt

    def _render_as(self, kind: str, default: str, **context: Any) -> str:
        """A completion or edit prompt through its template, in the template's syntax. A Go
        template that fails leaves the text as it is, as LocalAI does."""
        source = self.config.templates.get(kind)
        if source is not None and self.config.template_syntax.get(kind) == GO:
            try:
                return go_template(source).render(prompt_data(
                    input=context["input"], instruction=context.get("instruction", ""),
                    system_prompt=self.config.system_prompt or ""))
            except TemplateError as exc:
                log.warning("model %s: template.%s failed (%s); the text is sent as it is", self.config.name, kind, exc)
                return context["input"]
        return self._render(source or default, **context)

    def _render(self, template: str, **context: Any) -> str:
        try:
            return render(template, **context)
        except PromptTemplateError as exc:
            raise InvalidRequest(f"Model '{self.config.name}': prompt template: {exc}", code="template_error") from None

    def _stops(self, generation: Generation, extra: list[str] | None = None) -> list[str]:
        return list(generation.stop) + list(self.config.stopwords) + list(extra or [])

    def completion(self, request: CompletionRequest, cancel: CallControl) -> Iterator[Event]:
        # Token ids are the prompt itself: no template is put around them.
        prompts = [self._prompt("completion", self._render_as("completion", DEFAULT_COMPLETION_TEMPLATE, input=p))
                   if isinstance(p, str) else p for p in request.prompts]
        return self.model.decode(prompts, request.generation, cancel, stops=self._stops(request.generation),
                                 echo=request.echo, param="prompt", listed=request.listed)

    def edit(self, request: EditRequest, cancel: CallControl) -> Iterator[Event]:
        prompt = self._prompt("edit", self._render_as("edit", DEFAULT_EDIT_TEMPLATE, instruction=request.instruction,
                                                      input=request.input))
        return self.model.decode([prompt], request.generation, cancel, stops=self._stops(request.generation),
                                 param="input", copies_input=True)

    def chat(self, request: ChatRequest, cancel: CallControl) -> Iterator[Event]:
        if self.functions.grammar:
            self.model.check_constraints(request)
        media = tuple(part for m in request.messages for part in m.media)
        if media and self.model.media_marker is None:
            raise InvalidRequest(f"Model '{self.config.name}' reads no images or audio (it has no projector); "
                                 f"'{getattr(media[0], 'label', '') or 'messages'}' is one.",
                                 param=getattr(media[0], "label", None) or "messages", code="unsupported_content")
        messages = [template_message(m, self.model.media_marker) for m in request.messages]
        if self.go_chat is not None and media:
            messages, media = self._localai_media(request.messages, messages)
        last = request.messages[-1] if request.messages else None
        prefill = ""
        if request.prefill and last is not None and last.role == "assistant" and not last.tool_calls and not last.media:
            prefill = messages.pop()["content"]  # the answer so far: after the generation prompt, not a turn
        use = ToolUse.from_request(request, self.functions)
        if self.go_chat is not None:
            constrained = self.functions.grammar and (use is not None or request.response_format is not None)
            tools = None
            if use is not None:  # the no-action function as LocalAI shows it to its templates
                # listed only when a grammar makes the model choose it, as in LocalAI
                tools = [{**t, "parameters": LOCALAI_NO_ACTION_PARAMETERS} if t["name"] == use.no_action else t
                         for t in use.as_dicts(include_no_action=constrained)]
            go_chat = self.go_chat
            try:  # one time limit for the whole chat, not one per message's template
                prompt = within(RENDER_SECONDS, lambda: go_chat.chat_prompt(
                    messages, tools, use_function=use is not None, grammar=constrained)) + prefill
            except PromptTemplateError as exc:
                raise InvalidRequest(f"Model '{self.config.name}': prompt template: {exc}",
                                     code="template_error") from None
            return self._generate(request, cancel, prompt, media, use, prefill)
        system_prompt = self.config.system_prompt
        if system_prompt and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system_prompt})
        template = (use and self.function_template) or self.chat_template
        tools = None
        if tool_prompt.template_knows_tools(template):
            messages = tool_prompt.messages_for_template(messages)
            tools = tool_prompt.openai_tools(use) if use else None
        else:
            guide = tool_prompt.instructions(use, self.functions, self.config.name) if use else None
            messages = tool_prompt.messages_in_plain_text(messages, guide)
        if reads_typed_content(template):  # content as one text part, markers for media within it
            messages = [{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m.get("content"), str)
                        else m for m in messages]
        prompt = self._render(template, messages=messages, add_generation_prompt=True, bos_token=self.model.bos_text,
                              eos_token=self.model.eos_text, system_prompt=system_prompt or "", tools=tools) + prefill
        return self._generate(request, cancel, prompt, media, use, prefill)

    def _localai_media(self, request_messages: tuple[Message, ...] | list[Message],
                       messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], tuple[Part, ...]]:
        """The Go-template path writes a message with images or audio as LocalAI does, through
        `template.multimodal`; the media go to the model in the order of their markers."""
        shaped, ordered = [], []
        images_before = audios_before = 0
        for message, out in zip(request_messages, messages):
            if not message.media:
                shaped.append(out)
                continue
            images = [part for part in message.media if isinstance(part, ImagePart)]
            audios = [part for part in message.media if isinstance(part, AudioPart)]
            content = multimodal_content(self.config.templates.get("multimodal"), message.text, images, audios,
                                         images_before, audios_before, self.model.media_marker or "")
            images_before, audios_before = images_before + len(images), audios_before + len(audios)
            shaped.append({**out, "content": content.content})
            ordered.extend(content.media)
        return shaped, tuple(ordered)

    def _generate(self, request: ChatRequest, cancel: CallControl, prompt: str, media: tuple[Part, ...],
                  use: ToolUse | None, prefill: str) -> Iterator[Event]:
        self._prompt("chat", prompt)
        if request.count_only:
            return iter([Usage(prompt_tokens=self.model.count(prompt, media, "messages"), completion_tokens=0)])
        grammar = None
        if self.functions.grammar:
            grammar = self.model.grammar(use, None if use else request.response_format)
        # Under a grammar no stop word applies: the output ends where the grammar ends.
        stops = [] if grammar is not None else self._stops(request.generation, self.chat_stopwords)
        events = self.model.decode([prompt], request.generation, cancel, stops=stops, lstrip=not prefill,
                                   grammar=grammar, media=media)
        if use is None:
            return events
        settings = self.functions
        names = {t.name for t in use.tools if t.name != use.no_action}
        return _shaped(events, lambda index: CallShaper(
            index, names, use.parallel, use.no_action, grammar is not None,
            settings.response_regex, settings.name_key, settings.arguments_key))
