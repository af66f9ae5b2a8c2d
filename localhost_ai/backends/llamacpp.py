"""llama-cpp backend: GGUF models through llama-cpp-python, token by token."""

from __future__ import annotations

import codecs
import ctypes
import logging
import queue
import random
from dataclasses import dataclass, field
from typing import Any, Generator, Iterable, Iterator

from localhost_ai.backends import llama_tools
from localhost_ai.backends.base import Backend, CallControl, register
from localhost_ai.backends.embedding_inputs import BatchingOptions, EmbeddingInputs
from localhost_ai.backends.llama_logprobs import Report
from localhost_ai.backends.optional import require
from localhost_ai.backends.stops import StopMatcher
from localhost_ai.backends.textgen import TextGeneration
from localhost_ai.backends.tool_prompt import ToolUse
from localhost_ai.config import option
from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.events import Event, Finish, TextDelta, TokenizerInfo, Tokens, Usage
from localhost_ai.contract.generate import ChatRequest, CompletionRequest, EditRequest, Generation, Part, ResponseFormat
from localhost_ai.contract.tokenize import DetokenizeRequest, TokenizeRequest, TokenizerInfoRequest
from localhost_ai.errors import BackendError, InvalidRequest

log = logging.getLogger(__name__)


@dataclass
class Prompt:
    """A text prompt's tokens; llama_media's Prompt, with images or audio, has the same face."""

    tokens: list[int]
    media: dict[int, Any] = field(default_factory=dict)
    added_bos: bool = True  # the tokenizer put the BOS in front (a prompt of token ids has what it was given)

    def close(self) -> None:
        pass

# Sequences a generative model decodes together when its YAML sets no `parallel`. On two
# CPU cores, 4 sequences in one batch give about 2.4x one sequence's tokens/s in total.
DEFAULT_PARALLEL = 4
# Prompt tokens read per decoding step, so that a long prompt holds the other sequences
# back by one chunk's work per step.
DEFAULT_PREFILL_CHUNK = 128
# A long prompt is first counted in pieces this long, each counted as this many tokens
# fewer than it has (llamacpp._refuse_if_surely_too_long).
PIECE_CHARS = 1024
PIECE_MARGIN = 4



@dataclass(frozen=True)
class LlamaOptions(BatchingOptions):
    mmap: bool = option({"type": "boolean"}, True)
    parallel: int = option({"type": "integer", "minimum": 1, "maximum": 64}, DEFAULT_PARALLEL)
    prefill_chunk: int = option({"type": "integer", "minimum": 16, "maximum": 4096}, DEFAULT_PREFILL_CHUNK)
    # LocalAI's embeddings pooling: "mean" or "last"; "" or "backend" the model's own
    # (decayed_mean, which llama.cpp lacks, is refused with the file: config/localai_fields.py).
    pooling: str = option({"enum": ["", "backend", "mean", "last"]}, "", key="parameters.pooling")
    # Speculative decoding by prompt lookup: true for every unseeded request at any load,
    # false never.  Unset: for edits (an answer that copies its input) at any load, and for
    # the others while one is the only sequence in the engine, as many drafts as pay at the measured
    # cost of a step's rows (llama_engine.worth_verifying).
    prompt_lookup: bool | None = option({"type": "boolean"}, None)
    n_draft: int = option({"type": "integer", "minimum": 1, "maximum": 32}, 8)  # LocalAI's name: drafts a step
    # A smaller model with the same vocabulary that drafts for every unseeded request (LocalAI's field).
    draft_model: str | None = option({"type": "string", "minLength": 1})


@register("llama-cpp")
class LlamaCppBackend(Backend):
    Options = LlamaOptions
    options: LlamaOptions
    media_marker: str | None = None
    projector: Any = None

    def concurrency(self) -> int:
        """Sequences decoded together: the YAML's `parallel`."""
        return 1 if self.config.embeddings else self.options.parallel

    def load(self) -> None:
        (llama_cpp,) = require("The llama-cpp backend", "llama", "llama_cpp")
        self._llama_cpp = llama_cpp
        self._pieces: dict[int, bytes] = {}
        self.n_ctx = self.config.context_size or 2048
        embeddings = self.config.embeddings
        # A generative model decodes in the engine's own context; Llama's is then only
        # for the tokenizer and metadata, and kept small.
        extra = {"embedding": True, "n_batch": self.n_ctx, "n_ubatch": self.n_ctx} if embeddings else {"n_ctx": 64}
        self.llm = self._open(llama_cpp, **extra)
        trained = self.llm._model.n_ctx_train()
        if 0 < trained < self.n_ctx and self.config.context_size_is_default:
            self.n_ctx = trained  # the server's default, not the YAML's ask: as much as the model has
            if embeddings:  # its context was made with the larger size
                self.llm.close()
                extra = {"embedding": True, "n_batch": self.n_ctx, "n_ubatch": self.n_ctx}
                self.llm = self._open(llama_cpp, **extra)
        if 0 < trained < self.n_ctx:  # before the engine's contexts (the KV cache) are made
            raise InvalidRequest(
                f"context_size is {self.n_ctx:,} tokens, more than the {trained:,} this model was trained for; set "
                f"context_size to at most {trained:,} in its YAML.", param="context_size", code="invalid_config")
        asked = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}.get(
            self.options.pooling)
        if embeddings and asked is None and llama_cpp.llama_pooling_type(self.llm.ctx) == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            asked = llama_cpp.LLAMA_POOLING_TYPE_MEAN  # a generative model names none: the mean over tokens
        if embeddings and asked is not None and asked != llama_cpp.llama_pooling_type(self.llm.ctx):
            self.llm.close()
            self.llm = self._open(llama_cpp, pooling_type=asked, **extra)
        if embeddings:
            self.inputs = EmbeddingInputs(
                tokenize=lambda texts: [self.llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in texts],
                window=self.n_ctx,
                vocab_size=self.llm.n_vocab(),
            )
            return
        from localhost_ai.backends.llama_engine import Engine

        self.projector = None
        media_batch = 0
        if self.config.mmproj is not None:
            from localhost_ai.backends.llama_media import MEDIA_BATCH, Projector

            self.projector = Projector(llama_cpp, self.llm._model.model, self.config.mmproj, self.config.threads)
            media_batch = MEDIA_BATCH
        self.media_marker = self.projector.marker if self.projector is not None else None
        self.draft = self._open_draft(llama_cpp)
        self.engine = Engine(
            llama_cpp,
            self.llm._model.model,
            context_per_slot=self.n_ctx,
            slots=self.concurrency(),
            threads=self.config.threads,
            chunk=self.options.prefill_chunk,
            media_batch=media_batch,
            draft_max=0 if self.options.prompt_lookup is False and self.draft is None else self.options.n_draft,
        )
        self.chat_template = (self.llm.metadata or {}).get("tokenizer.chat_template")
        vocab = self.llm._model
        self.bos_text = vocab.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
        self.eos_text = vocab.token_get_text(self.llm.token_eos()) if self.llm.token_eos() >= 0 else ""
        self.text = TextGeneration(self.config, self)

    # -- embeddings (batched by the worker) ---------------------------------------------

    def stats(self) -> dict[str, Any]:
        engine = getattr(self, "engine", None)
        return engine.snapshot() if engine is not None else {}

    def batching(self) -> dict[str, tuple[int, float]]:
        if not self.config.embeddings:
            return {}
        return {EmbedRequest.OP: self.options.batching(32, 5.0)}

    def batch_size(self, request: EmbedRequest) -> int:
        return len(request.inputs)

    def run_batch(self, requests: list[EmbedRequest]) -> list[Any]:
        return self.inputs.run(requests, self._embed, self.llm.n_embd(), self.options.matryoshka)

    def _embed(self, sequences: list[list[int]]) -> Any:
        """Pooled, L2-normalised embeddings; token ids go back to text, which llama-cpp-python's
        embed() takes (the BOS it adds again is the one they began with)."""
        import numpy as np

        texts = [self.llm.detokenize(ids).decode("utf-8", errors="replace") for ids in sequences]
        return np.asarray(self.llm.embed(texts, normalize=True), dtype=np.float32)

    def _open_draft(self, llama_cpp: Any) -> Any:
        """The draft model's context, or None; its vocabulary must be the model's own."""
        if not self.options.draft_model or self.config.embeddings:
            return None
        from localhost_ai.backends.llama_speculative import DraftModel

        path = self.config.source.parent / self.options.draft_model  # checked with the YAML: in the folder
        self.draft_llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=self.config.threads,
                                         use_mmap=self.options.mmap, verbose=False)
        if self.draft_llm.n_vocab() != self.llm.n_vocab() or any(
                self.draft_llm._model.token_get_text(t) != self.llm._model.token_get_text(t)
                for t in range(0, self.llm.n_vocab(), max(1, self.llm.n_vocab() // 64))):
            raise InvalidRequest(f"draft_model '{self.options.draft_model}' has another vocabulary than "
                                 f"'{self.config.model_path.name}'; a draft model must share the model's tokenizer.",
                                 param="draft_model", code="invalid_config")
        return DraftModel(llama_cpp, self.draft_llm._model.model, self.n_ctx, self.concurrency(), self.config.threads)

    def _open(self, llama_cpp: Any, **extra: Any) -> Any:
        return llama_cpp.Llama(
            model_path=str(self.config.model_path),
            n_ctx=extra.pop("n_ctx", self.n_ctx),
            n_threads=self.config.threads,
            use_mmap=self.options.mmap,
            verbose=False,
            **extra,
        )

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
            if engine.alive:  # a step still runs on the model and projector: the process exit frees them
                return
            self.engine = None
        projector = getattr(self, "projector", None)
        if projector is not None:
            projector.close()
            self.projector = None
        draft = getattr(self, "draft", None)
        if draft is not None:
            draft.close()
            self.draft = None
        draft_llm = getattr(self, "draft_llm", None)
        if draft_llm is not None:
            draft_llm.close()
            self.draft_llm = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None

    # -- operations: text generation is TextGeneration's, the decoding is here ----------

    def op_completion(self, request: CompletionRequest, cancel: CallControl) -> Iterator[Event]:
        return self.text.completion(request, cancel)

    def op_edit(self, request: EditRequest, cancel: CallControl) -> Iterator[Event]:
        return self.text.edit(request, cancel)

    def op_chat(self, request: ChatRequest, cancel: CallControl) -> Iterator[Event]:
        return self.text.chat(request, cancel)

    def op_tokenize(self, request: TokenizeRequest, cancel: CallControl) -> Iterator[Event]:
        """llama.cpp's /tokenize: special tokens written in the text are read as themselves."""
        self._refuse_if_surely_too_long(request.content, "content")
        tokens = self.llm.tokenize(request.content.encode("utf-8"), add_bos=request.add_special,
                                   special=request.parse_special)
        pieces = [list(self.piece(t)) for t in tokens] if request.with_pieces else None
        yield Tokens(tokens, pieces)

    def op_detokenize(self, request: DetokenizeRequest, cancel: CallControl) -> Iterator[Event]:
        self._check_ids(request.tokens, "tokens")
        yield Tokens(list(request.tokens), text=self._echo_text(list(request.tokens)))

    def op_tokenizer_info(self, request: TokenizerInfoRequest, cancel: CallControl) -> Iterator[Event]:
        vocab = self.llm._model.vocab
        lib = self._llama_cpp

        def text(token: int) -> str | None:
            return self.piece(token).decode("utf-8", errors="replace") if token >= 0 else None

        template = None if self.config.embeddings else self.text.chat_template
        yield TokenizerInfo(text(lib.llama_vocab_bos(vocab)), text(lib.llama_vocab_eos(vocab)),
                            text(lib.llama_vocab_pad(vocab)), template, self.n_ctx)

    def check_constraints(self, request: ChatRequest) -> None:
        llama_tools.check_request(request.tools, request.response_format)

    def grammar(self, use: ToolUse | None, response_format: ResponseFormat | None) -> str | None:
        if use is not None:
            return llama_tools.tools_grammar(use)
        if response_format is not None:
            return llama_tools.response_format_grammar({"type": response_format.type, "schema": response_format.schema})
        return None

    def _tokenize(self, prompt: str, param: str) -> list[int]:
        self._refuse_if_surely_too_long(prompt, param)
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        bos = self.llm.token_bos()
        if len(tokens) >= 2 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]  # the template wrote its own BOS
        return tokens

    def _refuse_if_surely_too_long(self, prompt: str, param: str) -> None:
        """A prompt with more characters than the context has tokens may not fit.  llama.cpp
        tokenizes some text in time quadratic in its length (100 KB of "a\\n" takes about a
        minute), so such a prompt is first counted in pieces, which takes linear time: each
        piece's count is at most a few tokens more than its share of the whole (a token cut
        in two, a space put in front), so their sum less that margin is a floor."""
        if len(prompt) <= self.n_ctx:
            return
        floor = 0
        start = 0
        while start < len(prompt):
            end = start + PIECE_CHARS
            if end < len(prompt):  # cut after a space, or else before a '<' (special tokens): no token is cut
                space = max(prompt.rfind(" ", start, end), prompt.rfind("\n", start, end))
                angle = prompt.rfind("<", start, end)
                end = space + 1 if space > start else angle if angle > start else end
            piece = prompt[start:end].encode("utf-8")
            floor += len(self.llm.tokenize(piece, add_bos=False, special=True)) - PIECE_MARGIN
            start = end
            if floor > self.n_ctx:
                raise InvalidRequest(
                    f"This model's maximum context length is {self.n_ctx} tokens, and the prompt alone has more "
                    f"than {floor} tokens.", param=param, code="context_length_exceeded")

    def _budget(self, prompt_tokens: int, requested: int | None, param: str, fit: bool = False) -> int:
        room = self.n_ctx - prompt_tokens
        if room <= 0:
            raise InvalidRequest(
                f"This model's maximum context length is {self.n_ctx} tokens, and the prompt alone has "
                f"{prompt_tokens} tokens.",
                param=param,
                code="context_length_exceeded",
            )
        if requested is not None and requested > room and fit:
            return room
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
        default = self.config.parameters.get("max_tokens")
        return min(default, room) if default else room

    def decode(self, prompts: list[str | tuple[int, ...]], generation: Generation, cancel: CallControl, *,
               stops: list[str], echo: bool = False, lstrip: bool = False, grammar: str | None = None,
               param: str = "messages", media: tuple[Part, ...] = (), listed: bool = False,
               copies_input: bool = False) -> Iterator[Event]:
        """`lstrip`: a chat answer starts at its first visible character (templates end
        with 'Answer:' or a newline, and the model's first token carries the space).
        `copies_input`: the answer is likely to repeat the prompt (an edit), so prompt
        lookup drafts for it unless the model's YAML says otherwise.
        `media`: the image and audio parts that the one prompt's markers stand for.
        A prompt of token ids is read as it is; `listed`: the request's prompts were a list
        (an error names `prompt[i]`)."""
        n = generation.n
        sampling = generation.sampling.resolve(self.config)
        lookup = {True: "always", False: None}.get(self.options.prompt_lookup,  # type: ignore[arg-type]
                                                      "always" if copies_input else "alone")
        self._check_ids((token for token, _ in generation.sampling.logit_bias), "logit_bias", indexed=False)
        tokenized = [self._tokenize_media(prompts[0], media, param)] if media else \
            [self._prompt(p, f"{param}[{i}]" if listed else param) for i, p in enumerate(prompts)]
        running = None
        try:
            if not all(p.tokens for p in tokenized):
                raise InvalidRequest("The prompt is empty.", param="prompt", code="empty_prompt")
            budgets = [self._budget(len(p.tokens), generation.max_tokens, param, generation.fit_max_tokens)
                       for p in tokenized]
            prompt_tokens = sum(len(p.tokens) for p in tokenized)
            completion_tokens = cached_tokens = 0
            for p_index, (text, prompt, budget) in enumerate(zip(prompts, tokenized, budgets)):
                for copy in range(n):
                    index = p_index * n + copy
                    echoed = (text if isinstance(text, str) else self._echo_text(prompt.tokens)) if echo else None
                    sequence = running = self._sequence(prompt, budget, sampling, stops, index, cancel, lstrip,
                                                        grammar, generation, echoed, lookup)
                    while True:
                        try:
                            yield next(sequence)
                        except StopIteration as end:
                            produced, finish, cached, stop = end.value
                            break
                    completion_tokens += produced
                    cached_tokens += cached if copy == 0 else 0  # later copies reuse the first
                    if cancel.is_set():
                        log.info("model %s: cancelled after %d tokens", self.config.name, produced)
                        return
                    log.debug("model %s: %d prompt + %d completion tokens, %s", self.config.name, len(prompt.tokens),
                              produced, finish)
                    yield Finish(index, finish, stop)
            yield Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cached_tokens=cached_tokens)
        finally:
            if running is not None:  # its engine sequence has ended before the prompts' media is freed
                running.close()
            for prompt in tokenized:
                prompt.close()

    def _prompt(self, prompt: str | tuple[int, ...], param: str) -> "Prompt":
        if isinstance(prompt, str):
            return Prompt(self._tokenize(prompt, param))
        self._check_ids(prompt, param)
        return Prompt(list(prompt), added_bos=False)

    def _check_ids(self, tokens: Iterable[int], param: str, indexed: bool = True) -> None:
        """Every id in the vocabulary; an error names `param[j]` (or `param` alone: a map's keys)."""
        n_vocab = self.llm.n_vocab()
        for j, token in enumerate(tokens):
            if not 0 <= token < n_vocab:
                where = f"{param}[{j}]" if indexed else param
                raise InvalidRequest(f"'{where}': token id {token} is not in this model's vocabulary "
                                     f"(0 to {n_vocab - 1}).", param=where, code="invalid_token")

    def piece(self, token: int) -> bytes:
        """A token's bytes as log-probabilities and /tokenize show it (control tokens as their text)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.token_bytes(token, special=True)
        return piece

    def token_bytes(self, token: int, special: bool) -> bytes:
        """A token's bytes, however long (llama-cpp-python's detokenize cuts them at 32)."""
        lib = self._llama_cpp
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = lib.llama_token_to_piece(self.llm._model.vocab, token, buffer, size, 0, special)
            if n >= 0:
                return buffer.raw[:n]
            size = -n

    def _echo_pieces(self, tokens: list[int], added_bos: bool) -> list[bytes]:
        """Each prompt token's bytes as the echoed text spells it: the BOS this server put in
        front spells nothing."""
        pieces = [self.piece(t) for t in tokens]
        if added_bos and tokens and tokens[0] == self.llm.token_bos():
            pieces[0] = b""
        return pieces

    def _echo_text(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def count(self, prompt: str, media: tuple[Part, ...], param: str) -> int:
        tokenized = self._tokenize_media(prompt, media, param) if media else Prompt(self._tokenize(prompt, param))
        try:
            return len(tokenized.tokens)
        finally:
            tokenized.close()

    def _tokenize_media(self, prompt: str, media: tuple[Part, ...], param: str) -> "Prompt":
        """A prompt with images or audio, through the model's projector."""
        if self.projector is None:
            raise InvalidRequest(f"Model '{self.config.name}' reads no images or audio (it has no projector).",
                                 param=param, code="unsupported_content")
        self._refuse_if_surely_too_long(prompt.replace(self.projector.marker, ""), param)
        return self.projector.prompt(prompt, list(media), self.llm.token_bos() if self.llm.token_bos() >= 0 else None)

    def _next(self, sequence: Any) -> tuple[str, Any]:
        """The engine's next message for this sequence; an engine that has died says so."""
        while True:
            try:
                return sequence.output.get(timeout=1.0)
            except queue.Empty:
                if not self.engine.alive:
                    raise BackendError(f"Model '{self.config.name}': the decoding thread has stopped.") from None

    def _sampler(self, sampling: dict[str, Any], seed: int, grammar: str | None, generation: Generation) -> Any:
        from localhost_ai.backends.llama_sampler import GrammarError, Sampler  # numpy: not at server start

        logprobs = generation.logprobs
        try:
            return Sampler(self._llama_cpp, self.llm._model.vocab, self.llm.n_vocab(), sampling, seed, grammar,
                           logit_bias=generation.sampling.logit_bias,
                           top_logprobs=logprobs.top if logprobs is not None else None, context=self.n_ctx)
        except GrammarError as exc:
            raise InvalidRequest(f"Model '{self.config.name}': {exc}", code="invalid_grammar") from None

    def _sequence(
        self,
        prompt: "Prompt",
        budget: int,
        sampling: dict[str, Any],
        stops: list[str],
        index: int,
        cancel: CallControl,
        lstrip: bool = False,
        grammar: str | None = None,
        generation: Generation = Generation(),
        echo: str | None = None,
        lookup: str | None = None,
    ) -> Generator[Event, None, tuple[int, str, int, str | None]]:
        """Generate one sequence in the engine; return (tokens produced, finish reason,
        prompt tokens found cached, the stop word that ended it).  A seeded request reads its whole prompt afresh rather
        than reuse cached cells (which shifts logits in the last bits), alone, and its tokens
        are decoded alone too (the engine's `exact`), so it repeats exactly; it gets no drafts.
        `lookup`: an unseeded one gets prompt-lookup drafts, "always" or while it is "alone"
        in the engine (a draft model drafts for every unseeded one).  `echo`: the prompt's
        text, sent first (after its tokens' log-probabilities, when the prompt is scored)."""
        from localhost_ai.backends.llama_engine import Sequence
        from localhost_ai.backends.llama_sampler import NothingAllowed
        from localhost_ai.backends.llama_speculative import PromptLookup

        seed = sampling["seed"]
        seeded = seed is not None and seed >= 0
        wanted = generation.logprobs
        score_prompt = wanted is not None and wanted.prompt and echo is not None
        sampler = self._sampler(sampling, seed if seeded else random.getrandbits(31), grammar, generation)
        sampler.prime(prompt.tokens)
        sequence = Sequence(prompt.tokens, sampler, budget, cancel, media=prompt.media,
                            reuse=not seeded and not score_prompt, score_prompt=score_prompt, exact=seeded,
                            drafter=None if seeded else self.draft or (PromptLookup() if lookup else None),
                            draft_alone=self.draft is None and lookup == "alone")
        report = Report(index, self.piece, len(echo) if echo is not None else 0, everything=score_prompt) \
            if wanted is not None else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = StopMatcher(stops)
        produced = 0
        finish = "length"
        try:
            self.engine.submit(sequence)
        except RuntimeError as exc:
            sampler.close()
            raise BackendError(f"Model '{self.config.name}': {exc}") from None
        if echo is not None and not score_prompt:
            yield TextDelta(index, echo)
        scores: list[Any] = []
        ended = False
        try:
            while True:
                kind, value = self._next(sequence)
                if kind == "prompt":
                    scores.extend(value)
                    continue
                if kind == "eog":  # a prompt being scored: the end's position counts too
                    if not sequence.stopped:
                        report.add(*value, chars=0)
                    continue
                if score_prompt and echo is not None and kind != "error":  # the prompt is read: its tokens, then its text
                    if len(scores) == len(prompt.tokens) - 1:  # (a cancelled read has no scores to give)
                        yield report.prompt(prompt.tokens, scores, self._echo_pieces(prompt.tokens, prompt.added_bos))
                    yield TextDelta(index, echo)
                    echo = None
                ended = kind in ("end", "error")
                if kind == "end":
                    finish = "stop" if matcher.stopped or value == "stop" else value
                    break
                if kind == "error":
                    if isinstance(value, NothingAllowed):
                        raise InvalidRequest(f"Model '{self.config.name}': {value}.", param="logit_bias",
                                             code="invalid_value")
                    raise BackendError(f"Model '{self.config.name}': decoding failed: {value}")
                if sequence.stopped:
                    continue  # tokens decoded before the engine saw the stop
                token, scored = value
                produced += 1
                piece = self.token_bytes(token, special=False)  # each token's bytes; the decoder joins them
                decoded = decoder.decode(piece)
                text = matcher.feed(decoded)
                if report is not None:
                    report.add(token, scored, len(decoded))
                    released = report.release(len(text), matcher.stopped)
                    if released is not None:
                        yield released
                if lstrip and text:
                    text = text.lstrip()
                    lstrip = not text
                if text:
                    yield TextDelta(index, text)
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
        tail = ""
        if not matcher.stopped:
            tail = matcher.feed(decoder.decode(b"", final=True))
            tail += "" if matcher.stopped else matcher.flush()
        if report is not None:
            released = report.release(len(tail), matcher.stopped, final=not matcher.stopped)
            if released is not None:
                yield released
        tail = tail.lstrip() if lstrip else tail
        if tail:
            yield TextDelta(index, tail)
        return produced, finish, sequence.cached, matcher.matched
