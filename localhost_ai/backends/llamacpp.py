"""llama-cpp backend: GGUF models through llama-cpp-python, token by token."""

from __future__ import annotations

import codecs
import logging
import queue
import random
from typing import Any, Callable, Generator, Iterator

from localhost_ai.backends import llama_tools
from localhost_ai.backends.base import CHAT, COMPLETION, EDIT, EMBEDDINGS, Backend, CallControl, Piece, register
from localhost_ai.backends.embedding_inputs import EmbeddingInputs
from localhost_ai.backends.llama_tools import FunctionSettings, ToolUse
from localhost_ai.backends.optional import require
from localhost_ai.backends.stops import StopMatcher
from localhost_ai.backends.tool_calls import CallShaper
from localhost_ai.config.templates import (
    DEFAULT_COMPLETION_TEMPLATE,
    DEFAULT_EDIT_TEMPLATE,
    FALLBACK_CHAT_STOPWORDS,
    FALLBACK_CHAT_TEMPLATE,
    PromptTemplateError,
    normalise_messages,
    render,
)
from localhost_ai.errors import BackendError, InvalidRequest

log = logging.getLogger(__name__)

# Sequences a generative model decodes together when its YAML sets no `parallel`. On two
# CPU cores, 4 sequences in one batch give about 2.4x one sequence's tokens/s in total.
DEFAULT_PARALLEL = 4
# Prompt tokens read per decoding step, so that a long prompt holds the other sequences
# back by one chunk's work per step.
DEFAULT_PREFILL_CHUNK = 128

# Sampling defaults when neither the request nor the YAML sets them (llama.cpp's own).
_DEFAULTS = {
    "temperature": 0.8,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repeat_penalty": 1.0,
    "seed": -1,
}


@register("llama-cpp")
class LlamaCppBackend(Backend):
    @classmethod
    def capabilities(cls, config: dict[str, Any]) -> frozenset[str]:
        # A context made for embeddings pools its output; it is not used for generation.
        return frozenset({EMBEDDINGS}) if config.get("embeddings") else frozenset({CHAT, COMPLETION, EDIT})

    @classmethod
    def concurrency(cls, config: dict[str, Any]) -> int:
        """Sequences decoded together: the YAML's `parallel`, else DEFAULT_PARALLEL."""
        return 1 if config.get("embeddings") else (config.get("parallel") or DEFAULT_PARALLEL)

    def load(self) -> None:
        (llama_cpp,) = require("The llama-cpp backend", "llama", "llama_cpp")
        self._llama_cpp = llama_cpp
        self.n_ctx = self.config.get("context_size") or self.defaults.get("context_size") or 2048
        embeddings = bool(self.config.get("embeddings"))
        # A generative model decodes in the engine's own context; Llama's is then only
        # for the tokenizer and metadata, and kept small.
        extra = {"embedding": True, "n_batch": self.n_ctx, "n_ubatch": self.n_ctx} if embeddings else {"n_ctx": 64}
        self.llm = self._open(llama_cpp, **extra)
        if embeddings and llama_cpp.llama_pooling_type(self.llm.ctx) == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            # A generative model names no pooling; its embeddings are the mean over tokens.
            self.llm.close()
            self.llm = self._open(llama_cpp, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, **extra)
        if embeddings:
            self.inputs = EmbeddingInputs(
                tokenize=lambda texts: [self.llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in texts],
                window=self.n_ctx,
                vocab_size=self.llm.n_vocab(),
            )
            return
        from localhost_ai.backends.llama_engine import Engine

        self.engine = Engine(
            llama_cpp,
            self.llm._model.model,
            context_per_slot=self.n_ctx,
            slots=self.concurrency(self.config),
            threads=self.config.get("threads") or self.defaults.get("threads"),
            chunk=self.config.get("prefill_chunk") or DEFAULT_PREFILL_CHUNK,
        )
        templates = self.config.get("templates") or {}
        metadata = self.llm.metadata or {}
        self.chat_template = templates.get("chat") or metadata.get("tokenizer.chat_template")
        self.chat_stopwords = [] if self.chat_template else list(FALLBACK_CHAT_STOPWORDS)
        self.chat_template = self.chat_template or FALLBACK_CHAT_TEMPLATE
        self.completion_template = templates.get("completion") or DEFAULT_COMPLETION_TEMPLATE
        self.edit_template = templates.get("edit") or DEFAULT_EDIT_TEMPLATE
        self.function_template = templates.get("function")
        self.functions = FunctionSettings.from_config(self.config)
        vocab = self.llm._model
        self.bos_text = vocab.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
        self.eos_text = vocab.token_get_text(self.llm.token_eos()) if self.llm.token_eos() >= 0 else ""

    # -- embeddings (batched by the worker) ---------------------------------------------

    def stats(self) -> dict[str, Any]:
        engine = getattr(self, "engine", None)
        return engine.snapshot() if engine is not None else {}

    def batching(self) -> dict[str, tuple[int, float]]:
        if not self.config.get("embeddings"):
            return {}
        wait_ms = self.config.get("batch_wait_ms")
        return {"embeddings": (self.config.get("batch_size") or 32, (5.0 if wait_ms is None else wait_ms) / 1000)}

    def batch_size(self, op: str, payload: dict[str, Any]) -> int:
        return len(payload.get("input") or [])

    def run_batch(self, op: str, payloads: list[dict[str, Any]]) -> list[Any]:
        dimension = self.llm.n_embd()
        return self.inputs.run(payloads, self._embed, dimension, bool(self.config.get("matryoshka")))

    def _embed(self, sequences: list[list[int]]) -> Any:
        """Pooled, L2-normalised embeddings; token ids go back to text, which llama-cpp-python's
        embed() takes (the BOS it adds again is the one they began with)."""
        import numpy as np

        texts = [self.llm.detokenize(ids).decode("utf-8", errors="replace") for ids in sequences]
        return np.asarray(self.llm.embed(texts, normalize=True), dtype=np.float32)

    def _open(self, llama_cpp: Any, **extra: Any) -> Any:
        return llama_cpp.Llama(
            model_path=self.config["model_path"],
            n_ctx=extra.pop("n_ctx", self.n_ctx),
            n_threads=self.config.get("threads") or self.defaults.get("threads"),
            use_mmap=self.config.get("mmap", True),
            verbose=False,
            **extra,
        )

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
            self.engine = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None

    # -- operations ------------------------------------------------------------------

    def op_completion(self, payload: dict[str, Any], cancel: CallControl) -> Iterator[Piece]:
        prompts = [self._render(self.completion_template, input=p) for p in payload["prompts"]]
        return self._generate(prompts, payload, cancel, echo=payload.get("echo", False))

    def op_edit(self, payload: dict[str, Any], cancel: CallControl) -> Iterator[Piece]:
        prompt = self._render(self.edit_template, instruction=payload["instruction"], input=payload.get("input", ""))
        return self._generate([prompt], payload, cancel)

    def op_chat(self, payload: dict[str, Any], cancel: CallControl) -> Iterator[Piece]:
        messages = normalise_messages(payload["messages"])
        messages = [{**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in messages]
        system_prompt = self.config.get("system_prompt")
        if system_prompt and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system_prompt})
        use = ToolUse.from_payload(payload, self.functions)
        template = (use and self.function_template) or self.chat_template
        tools = None
        if llama_tools.template_knows_tools(template):
            messages = llama_tools.messages_for_template(messages)
            tools = llama_tools.openai_tools(use) if use else None
        else:
            guide = llama_tools.instructions(use, self.functions, self.config["name"]) if use else None
            messages = llama_tools.messages_in_plain_text(messages, guide)
        prompt = self._render(
            template,
            messages=messages,
            add_generation_prompt=True,
            bos_token=self.bos_text,
            eos_token=self.eos_text,
            system_prompt=system_prompt or "",
            tools=tools,
        )
        grammar = None
        if use is not None and self.functions.grammar:
            grammar = llama_tools.tools_grammar(use)
        elif use is None and payload.get("response_format") and self.functions.grammar:
            grammar = llama_tools.response_format_grammar(payload["response_format"])
        shaper = None
        if use is not None:
            settings = self.functions
            names = {t["name"] for t in use.tools if t["name"] != use.no_action}
            shaper = lambda index: CallShaper(  # noqa: E731
                index, names, use.parallel, use.no_action, grammar is not None,
                settings.response_regex, settings.name_key, settings.arguments_key)
        return self._generate([prompt], payload, cancel, extra_stops=self.chat_stopwords, lstrip=True,
                              grammar=grammar, shaper=shaper, legacy=bool(use and use.legacy))

    # -- generation ------------------------------------------------------------------

    def _render(self, template: str, **context: Any) -> str:
        try:
            return render(template, **context)
        except PromptTemplateError as exc:
            raise InvalidRequest(f"Model '{self.config['name']}': prompt template: {exc}", code="template_error") from None

    def _tokenize(self, prompt: str) -> list[int]:
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        bos = self.llm.token_bos()
        if len(tokens) >= 2 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]  # the template wrote its own BOS
        return tokens

    def _settings(self, payload: dict[str, Any]) -> dict[str, Any]:
        merged = {**_DEFAULTS, **(self.config.get("parameters") or {}), **payload.get("sampling", {})}
        return {k: merged[k] for k in _DEFAULTS}

    def _budget(self, prompt_tokens: int, requested: int | None) -> int:
        room = self.n_ctx - prompt_tokens
        if room <= 0:
            raise InvalidRequest(
                f"This model's maximum context length is {self.n_ctx} tokens, and the prompt alone has "
                f"{prompt_tokens} tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        if requested is not None and requested > room:
            raise InvalidRequest(
                f"This model's maximum context length is {self.n_ctx} tokens. However, you requested "
                f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} for the "
                f"completion). Please reduce the prompt or max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        if requested is not None:
            return requested
        default = (self.config.get("parameters") or {}).get("max_tokens")
        return min(default, room) if default else room

    def _generate(
        self,
        prompts: list[str],
        payload: dict[str, Any],
        cancel: CallControl,
        echo: bool = False,
        extra_stops: list[str] | None = None,
        lstrip: bool = False,
        grammar: str | None = None,
        shaper: Callable[[int], CallShaper] | None = None,
        legacy: bool = False,
    ) -> Iterator[Piece]:
        """`lstrip`: a chat answer starts at its first visible character (templates end
        with 'Answer:' or a newline, and the model's first token carries the space).
        Under a grammar no stop word applies: the output ends where the grammar ends."""
        n = payload.get("n", 1)
        sampling = self._settings(payload)
        stops = list(payload.get("stop") or []) + list(self.config.get("stopwords") or []) + list(extra_stops or [])
        if grammar is not None:
            stops = []
        tokenized = [self._tokenize(p) for p in prompts]
        if not all(tokenized):
            raise InvalidRequest("The prompt is empty.", param="prompt", code="empty_prompt")
        budgets = [self._budget(len(t), payload.get("max_tokens")) for t in tokenized]
        prompt_tokens = sum(len(t) for t in tokenized)
        completion_tokens = cached_tokens = 0
        for p_index, (prompt, tokens, budget) in enumerate(zip(prompts, tokenized, budgets)):
            for copy in range(n):
                index = p_index * n + copy
                if echo:
                    yield {"type": "text", "index": index, "text": prompt}
                shape = shaper(index) if shaper else None
                sequence = self._sequence(tokens, budget, sampling, stops, index, cancel, lstrip, grammar)
                while True:
                    try:
                        piece = next(sequence)
                    except StopIteration as end:
                        produced, finish, cached = end.value
                        break
                    yield from shape.feed(piece["text"]) if shape else [piece]
                completion_tokens += produced
                cached_tokens += cached if copy == 0 else 0  # later copies reuse the first
                if cancel.is_set():
                    log.info("model %s: cancelled after %d tokens", self.config["name"], produced)
                    return
                if shape:
                    yield from shape.finish()
                    if shape.calls and finish == "stop":
                        finish = "function_call" if legacy else "tool_calls"
                log.debug("model %s: %d prompt + %d completion tokens, %s", self.config["name"], len(tokens), produced, finish)
                yield {"type": "finish", "index": index, "finish_reason": finish}
        yield {"type": "usage", "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
               "cached_tokens": cached_tokens}

    def _next(self, sequence: Any) -> tuple[str, Any]:
        """The engine's next message for this sequence; an engine that has died says so."""
        while True:
            try:
                return sequence.output.get(timeout=1.0)
            except queue.Empty:
                if not self.engine.alive:
                    raise BackendError(f"Model '{self.config['name']}': the decoding thread has stopped.") from None

    def _sampler(self, sampling: dict[str, Any], seed: int, grammar: str | None) -> Any:
        from localhost_ai.backends.llama_sampler import GrammarError, Sampler  # numpy: not at server start

        try:
            return Sampler(self._llama_cpp, self.llm._model.vocab, self.llm.n_vocab(), sampling, seed, grammar)
        except GrammarError as exc:
            raise InvalidRequest(f"Model '{self.config['name']}': {exc}", code="invalid_grammar") from None

    def _sequence(
        self,
        tokens: list[int],
        budget: int,
        sampling: dict[str, Any],
        stops: list[str],
        index: int,
        cancel: CallControl,
        lstrip: bool = False,
        grammar: str | None = None,
    ) -> Generator[Piece, None, tuple[int, str, int]]:
        """Generate one sequence in the engine; return (tokens produced, finish reason,
        prompt tokens found cached).  A seeded request reads its whole prompt afresh rather
        than reuse cached cells (which shifts logits in the last bits); what else shares its
        batches can still shift them, so repeats are likely, not certain."""
        from localhost_ai.backends.llama_engine import Sequence

        seed = sampling["seed"]
        seeded = seed is not None and seed >= 0
        sampler = self._sampler(sampling, seed if seeded else random.getrandbits(31), grammar)
        sequence = Sequence(tokens, sampler, budget, cancel, reuse=not seeded)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = StopMatcher(stops)
        produced = 0
        finish = "length"
        try:
            self.engine.submit(sequence)
        except RuntimeError as exc:
            sampler.close()
            raise BackendError(f"Model '{self.config['name']}': {exc}") from None
        ended = False
        try:
            while True:
                kind, value = self._next(sequence)
                ended = kind in ("end", "error")
                if kind == "end":
                    finish = "stop" if matcher.stopped or value == "stop" else value
                    break
                if kind == "error":
                    raise BackendError(f"Model '{self.config['name']}': decoding failed: {value}")
                if sequence.stopped:
                    continue  # tokens decoded before the engine saw the stop
                produced += 1
                piece = self.llm.detokenize([value])  # each token's bytes; the decoder joins them
                text = matcher.feed(decoder.decode(piece))
                if lstrip and text:
                    text = text.lstrip()
                    lstrip = not text
                if text:
                    yield {"type": "text", "index": index, "text": text}
                if matcher.stopped:
                    sequence.stop()
        finally:
            if not ended:  # the caller stopped reading: let the engine drop it first
                sequence.stop()
                try:
                    while self._next(sequence)[0] not in ("end", "error"):
                        pass
                except BackendError:
                    pass
            sampler.close()
        if not matcher.stopped:
            tail = matcher.feed(decoder.decode(b"", final=True))
            tail += "" if matcher.stopped else matcher.flush()
            tail = tail.lstrip() if lstrip else tail
            if tail:
                yield {"type": "text", "index": index, "text": tail}
        return produced, finish, sequence.cached
