"""Continuous batching: many sequences decoded together in one llama.cpp context.

One thread owns the context.  Each step it builds one batch: the next token of every
sequence that is generating, plus at most `chunk` prompt tokens of sequences still
being read (so a long prompt delays the others by one chunk's work per step, not by
its whole length), decodes it with one `llama_decode`, and samples every sequence
that has new logits with that sequence's own sampler.  The tokens go back to the
callers' threads, which turn them into text.

Each sequence id is a slot with its own KV stream of `context_per_slot` cells.  A
finished slot keeps its cells: a new prompt that starts like one of them reuses that
prefix.

A prompt may hold media (images, audio): a run of cells that a `Media` decodes in one
go, named in the prompt by (the media's hash, index) so that a prefix holding the same
image matches and a different image never does.  Media is encoded only when it is read:
a prompt whose image is still in a slot's cells does not encode it again.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Hashable, Protocol

log = logging.getLogger(__name__)

# A sequence whose drafts are mostly rejected stops drafting: after this many draft tokens,
# when it kept fewer than this share of them (a rejected draft still costs its row).
DRAFT_TRIAL = 32
DRAFT_PAYS = 0.3
DRAFT_PROBE_EVERY = 8  # a lone sequence whose drafts do not pay still verifies one after this many steps

# Prompt rows scored in one step: each row's logits take n_vocab floats (1 MiB for Gemma 3's
# 262,144-token vocabulary) in llama.cpp's output buffer.
SCORED_CHUNK = 64


class Media(Protocol):
    """A prompt's image or audio: `n_tokens` cells, decoded by `decode` at KV position
    `n_past` of sequence `seq_id`, which returns the position after it."""

    n_tokens: int

    def decode(self, ctx: Any, n_past: int, seq_id: int, n_batch: int) -> int: ...


@dataclass
class Sequence:
    """One generation: the prompt's tokens in, sampled tokens out on `output` as
    ("token", (id, its Scored or None)), then ("end", "stop" | "length") or ("error", exception).
    With `score_prompt`, each prompt token after the first is scored first, as
    ("prompt", [Scored, ...]) for each chunk read, and an end-of-generation token comes
    as ("eog", (id, Scored)) before the end.  A budget of 0 reads the prompt only.
    `tokens` are token ids, and for media (key, i) for its i-th cell; `media` maps the
    index where each media run starts to its Media.  A prompt ends with a text token."""

    tokens: list[Hashable]
    sampler: Any
    budget: int
    control: Any  # CallControl: set when the caller has gone
    media: dict[int, Media] = field(default_factory=dict)
    reuse: bool = True
    score_prompt: bool = False  # needs every prompt token decoded: no cached prefix is reused
    # Repeatable bit for bit (a seeded request): its prompt is read in a batch of its own,
    # since llama.cpp's results for a sequence shift with what else a batch holds.
    exact: bool = False
    drafter: Any = None  # proposes tokens to verify with the next one (llama_speculative); None: no drafts
    # Drafts only while it is the only sequence in the engine (a step's rows then cost least,
    # and hold no one back).
    draft_alone: bool = False
    drafted: int = 0  # draft tokens it verified, and kept
    kept: int = 0
    rejected: int = 0  # verifications that ended at a draft the target's pick disagreed with
    unverified: int = 0  # steps in a row its drafts were not worth verifying (weighed drafting)
    output: "queue.Queue[tuple[str, Any]]" = field(default_factory=queue.Queue)
    stopped: bool = False  # the caller has what it wants (a stop word)
    cached: int = 0  # prompt tokens found in the slot's cells
    slot: "Slot | None" = None
    position: int = 0  # prompt items read into the KV cells (then: cells held)
    n_past: int = 0  # the KV position of the next cell (media may take more or fewer positions than cells)
    pending: int | None = None  # sampled, to be decoded next step
    generated: int = 0

    def stop(self) -> None:
        self.stopped = True


@dataclass
class Slot:
    seq_id: int
    cells: list[Hashable] = field(default_factory=list)  # what its KV cells hold, as a prompt names it
    starts: list[int] = field(default_factory=list)  # each cell's KV position (a media run's: where it starts)
    end: int = 0  # the KV position after the last cell
    sequence: Sequence | None = None

    def cut(self, keep: int) -> int:
        """Keep the first `keep` cells; return the KV position where the rest began."""
        position = self.starts[keep] if keep < len(self.cells) else self.end
        del self.cells[keep:], self.starts[keep:]
        self.end = position
        return position

    def extend(self, items: list[Hashable], position: int, end: int) -> None:
        """Cells for `items`: text from `position` on, one each; a media run all at `position`."""
        self.cells.extend(items)
        self.starts.extend([position] * len(items) if _is_media(items[0]) else range(position, end))
        self.end = end


def _is_media(item: Hashable) -> bool:
    return isinstance(item, tuple)


def common_prefix(a: list[Hashable], b: list[Hashable]) -> int:
    """The longest shared prefix that does not end inside a media run (half an image's
    cells are not that image)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    if n < len(b) and _is_media(b[n]):
        n -= b[n][1]
    return n


def slotted_context(llama_cpp: Any, model: Any, context_per_slot: int, slots: int, threads: int | None,
                    n_batch: int, purpose: str) -> Any:
    """A llama.cpp context with a KV stream of `context_per_slot` cells per slot."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = context_per_slot * slots
    params.n_seq_max = slots
    params.n_batch = params.n_ubatch = n_batch
    params.kv_unified = False  # a KV stream per slot: a sequence's cells do not depend on the others'
    params.swa_full = True  # so that a slot's cells can be cut back to a shared prefix
    if threads:
        params.n_threads = params.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not create a context for {purpose}")
    return ctx


class RowCosts:
    """What a decode of n rows costs while one sequence generates, measured as the engine
    runs (a moving average per row count).  A count not measured yet is estimated between
    its measured neighbours, or as the nearest one measured: a guess that lets each draft
    length be tried once, and then it is known."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}

    def note(self, rows: int, seconds: float) -> None:
        old = self.seconds.get(rows)
        self.seconds[rows] = seconds if old is None else old + (seconds - old) * 0.2

    def estimate(self, rows: int) -> float | None:
        known = self.seconds
        if rows in known or not known:
            return known.get(rows)
        below = max((r for r in known if r < rows), default=None)
        above = min((r for r in known if r > rows), default=None)
        if below is None or above is None:
            return known[above if below is None else below]
        return known[below] + (known[above] - known[below]) * (rows - below) / (above - below)


def worth_verifying(drafts: list[int], kept: int, rejected: int, costs: RowCosts) -> int:
    """How many of a lone sequence's drafts to verify: the length whose expected tokens per
    second is best, each draft token kept with the probability the sequence's record so
    far gives (a draft is kept only if the ones before it were), at the measured cost of
    that many more rows."""
    if costs.estimate(1) is None:
        return len(drafts)
    keep = (kept + 1) / (kept + rejected + 2)
    best, best_rate = 0, 1.0 / costs.estimate(1)  # type: ignore[operator]
    expected = odds = 1.0
    for k in range(1, len(drafts) + 1):
        odds *= keep
        expected += odds
        rate = expected / costs.estimate(1 + k)  # type: ignore[operator]
        if rate > best_rate:
            best, best_rate = k, rate
    return best


@dataclass
class EngineStats:
    steps: int = 0
    prompt_tokens: int = 0  # prompt tokens the requests brought
    prompt_tokens_evaluated: int = 0  # of those, how many were decoded (the rest reused)
    tokens_generated: int = 0
    max_prompt_tokens_in_step: int = 0
    max_sequences_in_step: int = 0
    steps_with_prompt_and_generation: int = 0  # a prompt chunk read alongside others' next tokens
    drafted: int = 0  # draft tokens decoded to be verified
    draft_accepted: int = 0  # of those, how many the target's own sampling agreed with
    prompt_steps: int = 0  # steps that read prompt tokens
    max_prompts_in_step: int = 0  # sequences whose prompts one step read together
    media: int = 0  # images and audio the prompts brought
    media_decoded: int = 0  # of those, how many were encoded and decoded (the rest reused)
    media_tokens_reused: int = 0


class Engine:
    def __init__(self, llama_cpp: Any, model: Any, context_per_slot: int, slots: int, threads: int | None,
                 chunk: int, media_batch: int = 0, draft_max: int = 0) -> None:
        """`media_batch`: the most cells of one image or audio decoded in one batch (a
        model that reads an image's cells all at once, non-causally, needs them together);
        `draft_max`: the most draft tokens a sequence verifies in one step."""
        self.lib = llama_cpp
        self.chunk = chunk
        if draft_max and (llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model)):
            # A recurrent state cannot be cut back to drop rejected drafts (llama.cpp refuses,
            # and the next decode fails for every sequence): no drafts for such a model.
            log.info("no speculative decoding: the model keeps a recurrent state, which cannot drop rejected drafts")
            draft_max = 0
        self.draft_max = draft_max
        self.context_per_slot = context_per_slot
        self.batch_size = max(chunk + slots, slots * (1 + draft_max), media_batch)
        self.ctx = slotted_context(llama_cpp, model, context_per_slot, slots, threads, self.batch_size,
                                   "continuous batching")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.batch = llama_cpp.llama_batch_init(self.batch_size, 0, 1)
        self.slots = [Slot(i) for i in range(slots)]
        self.incoming: collections.deque[Sequence] = collections.deque()
        self.active: list[Sequence] = []  # in order of admission
        self.stats = EngineStats()
        self.costs = RowCosts()
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="llama-engine", daemon=True)
        self._thread.start()

    # -- the callers' side ---------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, sequence: Sequence) -> None:
        with self._wake:
            if self._closing or not self.alive:
                raise RuntimeError("the model is unloading")
            self.incoming.append(sequence)
            self._wake.notify()

    def snapshot(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "slots": len(self.slots),
            "active": len(self.active),
            "waiting": len(self.incoming),
            "context_per_slot": self.context_per_slot,
            "prefill_chunk": self.chunk,
            "steps": stats.steps,
            "prompt_tokens": stats.prompt_tokens,
            "prompt_tokens_evaluated": stats.prompt_tokens_evaluated,
            "prompt_tokens_reused": stats.prompt_tokens - stats.prompt_tokens_evaluated,
            "tokens_generated": stats.tokens_generated,
            "max_prompt_tokens_in_step": stats.max_prompt_tokens_in_step,
            "max_sequences_in_step": stats.max_sequences_in_step,
            "steps_with_prompt_and_generation": stats.steps_with_prompt_and_generation,
            "drafted": stats.drafted,
            "draft_accepted": stats.draft_accepted,
            "prompt_steps": stats.prompt_steps,
            "max_prompts_in_step": stats.max_prompts_in_step,
            "media": stats.media,
            "media_decoded": stats.media_decoded,
            "media_tokens_reused": stats.media_tokens_reused,
        }

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=120)
        if self._thread.is_alive():  # a step still running uses the context: leave it to the exit
            log.warning("the decoding thread did not stop; its context is not freed")
            return
        self._fail_all(RuntimeError("the model is unloading"))
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)
        self.ctx = None

    def _fail_all(self, error: BaseException) -> None:
        with self._wake:
            waiting, self.incoming = list(self.incoming), collections.deque()
        for sequence in waiting + list(self.active):
            self._finish(sequence, error)

    # -- the engine thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # nothing may wait on a thread that is gone
            log.exception("the decoding thread stopped")
            self._fail_all(RuntimeError(f"the decoding thread stopped: {exc}"))

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and not self.active and not self.incoming:
                    self._wake.wait()
                if self._closing:
                    return
            try:
                with self._wake:
                    self._admit()
                self._step()
            except Exception as exc:  # a failed step fails the sequences in it, not the worker
                log.exception("decoding step failed")
                for sequence in list(self.active):
                    self._finish(sequence, exc)
                for slot in self.slots:  # what the cells hold is no longer known
                    self.lib.llama_memory_seq_rm(self.memory, slot.seq_id, 0, -1)
                    slot.cut(0)

    def _admit(self) -> None:
        """Free slots take waiting sequences in arrival order; each goes to the free slot
        holding the longest prefix of its prompt."""
        while self.incoming:
            free = [slot for slot in self.slots if slot.sequence is None]
            if not free:
                return
            sequence = self.incoming.popleft()
            if sequence.control.is_set():
                sequence.output.put(("end", "stop"))
                continue
            try:
                self._place(sequence, free)
            except Exception as exc:
                log.exception("admitting a sequence failed")
                self._finish(sequence, exc)

    def _place(self, sequence: Sequence, free: list[Slot]) -> None:
        """Give the sequence a free slot, cut back to the prefix it shares with the prompt."""
        if sequence.reuse:
            # The longest shared prefix; on a tie, the slot with least to lose.
            slot = max(free, key=lambda s: (common_prefix(s.cells, sequence.tokens), -len(s.cells)))
            # At least the last prompt token is decoded, so that its logits are fresh.
            keep = max(0, min(common_prefix(slot.cells, sequence.tokens), len(sequence.tokens) - 1))
            if _is_media(sequence.tokens[keep]):  # never half an image's cells
                keep -= sequence.tokens[keep][1]
        else:
            slot = min(free, key=lambda s: len(s.cells))
            keep = 0
        position = slot.starts[keep] if keep < len(slot.cells) else slot.end
        if not self.lib.llama_memory_seq_rm(self.memory, slot.seq_id, position, -1):
            # A recurrent model's state cannot be cut back to a prefix: start afresh.
            self.lib.llama_memory_seq_rm(self.memory, slot.seq_id, 0, -1)
            keep = 0
        sequence.n_past = slot.cut(keep)
        slot.sequence = sequence
        sequence.slot = slot
        sequence.position = sequence.cached = keep
        self.stats.prompt_tokens += len(sequence.tokens)
        self.stats.media += len(sequence.media)
        self.stats.media_tokens_reused += sum(m.n_tokens for start, m in sequence.media.items() if start < keep)
        self.active.append(sequence)

    def _add(self, n: int, token: int, position: int, seq_id: int, logits: bool) -> None:
        batch = self.batch
        batch.token[n] = token
        batch.pos[n] = position
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits

    def _step(self) -> None:
        """One step: the next token of every generating sequence in one decode, then prompt
        tokens in a second: up to `chunk` of them, from as many sequences still reading as
        they fill, or from one alone when it must be read alone (an exact one, a scored
        one, an image or audio).  llama.cpp's results for a sequence shift with how a
        batch mixes sequences; a batch of one token per sequence, or of one sequence's
        prompt alone, reads as the sequence would in a batch of its own."""
        for sequence in list(self.active):
            if sequence.stopped or sequence.control.is_set():
                self._finish(sequence, "stop")
        # In slot order: llama.cpp splits a batch whose sequences come out of order into
        # several, which halved the speed once slots were reused in another order.
        generating = sorted((s for s in self.active if s.pending is not None), key=lambda s: s.slot.seq_id)
        readers = self._readers()
        if not generating and not readers:
            return
        if generating:
            self._generate(generating)
        prompt_tokens = 0
        if readers and readers[0].position in readers[0].media:
            prompt_tokens = self._read_media(readers[0])
            readers = readers[:1]
        elif readers:
            prompt_tokens, readers = self._read_text(readers)
        stats = self.stats
        stats.steps += 1
        stats.max_prompt_tokens_in_step = max(stats.max_prompt_tokens_in_step, prompt_tokens)
        stats.max_sequences_in_step = max(stats.max_sequences_in_step, len(generating) + len(readers))
        if readers:
            stats.prompt_steps += 1
            stats.max_prompts_in_step = max(stats.max_prompts_in_step, len(readers))
        if generating and prompt_tokens:
            stats.steps_with_prompt_and_generation += 1
        for sequence in self.active:
            sequence.control.beat()

    def _generate(self, generating: list[Sequence]) -> None:
        """The next token of every sequence, in one decode, and an exact sequence's in one of
        its own: llama.cpp computes a row a little differently in a batch of several, which
        a seeded draw can tip."""
        shared = [s for s in generating if not s.exact]
        # Alone: nothing else is generating, reading a prompt or waiting (drafts would hold it back).
        alone = len(generating) == len(self.active) == 1 and not self.incoming
        for group in [[s] for s in generating if s.exact] + ([shared] if shared else []):
            self._generate_together(group, alone)

    def _generate_together(self, generating: list[Sequence], alone: bool) -> None:
        """Each sequence's next token, and its drafts after it, in one decode; then each
        sequence samples row by row and keeps its drafts as far as its own picks agree.
        The cells of the drafts it did not keep are removed.  `alone`: no other sequence
        is in the engine (the decode's time is then noted against its rows)."""
        rows: list[tuple[Sequence, int, list[int]]] = []
        n = 0
        for sequence in generating:
            tokens = [sequence.pending, *self._drafts(sequence, alone)]
            for i, token in enumerate(tokens):
                self._add(n + i, token, sequence.n_past + i, sequence.slot.seq_id, True)
            rows.append((sequence, n, tokens))
            n += len(tokens)
        started = time.perf_counter()
        self._decode(n)
        if alone:
            self.lib.llama_synchronize(self.ctx)  # a GPU build's decode returns before it is done
            self.costs.note(n, time.perf_counter() - started)
        for sequence, first, tokens in rows:
            base = sequence.n_past
            sequence.pending = None
            kept = 1  # cells that stay: the token fed in, and each draft the picks agreed with
            for i in range(len(tokens)):
                token = self._take(sequence, first + i)
                if token is None or i + 1 == len(tokens) or token != tokens[i + 1]:
                    break
                kept += 1
            sequence.slot.extend(tokens[:kept], base, base + kept)
            sequence.position += kept
            sequence.n_past += kept
            if kept < len(tokens):
                self.lib.llama_memory_seq_rm(self.memory, sequence.slot.seq_id, base + kept, -1)
            sequence.drafted += len(tokens) - 1
            sequence.kept += kept - 1
            sequence.rejected += kept < len(tokens)
            self.stats.drafted += len(tokens) - 1
            self.stats.draft_accepted += kept - 1

    def _drafts(self, sequence: Sequence, alone: bool) -> list[int]:
        """The drafts to verify after the sequence's next token.  A lone sequence whose drafts
        cost nothing to make (prompt lookup) verifies as many as pay at the measured cost of
        the rows; otherwise a sequence that keeps too few of them stops drafting."""
        if sequence.drafter is None or not self.draft_max or (sequence.draft_alone and not alone):
            return []
        weighed = alone and getattr(sequence.drafter, "free", False)
        if not weighed and sequence.drafted >= DRAFT_TRIAL and sequence.kept < sequence.drafted * DRAFT_PAYS:
            sequence.drafter = None  # its drafts cost more rows than they save: it goes on without
            return []
        room = min(self.draft_max, sequence.budget - sequence.generated - 1,
                   self.context_per_slot - sequence.n_past - 1)
        if room <= 0:
            return []
        try:
            drafts = sequence.drafter.draft([*sequence.slot.cells, sequence.pending], room, sequence.slot.seq_id)
        except Exception:  # a draft is only ever a guess: without one the sequence goes on
            log.exception("drafting failed")
            sequence.drafter = None
            return []
        if weighed and drafts:
            worth = worth_verifying(drafts, sequence.kept, sequence.rejected, self.costs)
            # Never none for good: a record that says drafts do not pay would then never change,
            # though the text may start to repeat itself.  One draft now and then tries again.
            sequence.unverified = 0 if worth else sequence.unverified + 1
            if sequence.unverified >= DRAFT_PROBE_EVERY:
                worth, sequence.unverified = 1, 0
            del drafts[worth:]
        return drafts

    def _readers(self) -> list[Sequence]:
        """The sequences whose prompts this step reads: the oldest still reading, alone when it
        must be; else every one that may share a batch, oldest first (the token budget
        decides how many get a share)."""
        waiting = [s for s in self.active if not s.generated and s.position < len(s.tokens)]
        if not waiting:
            return []

        def alone(sequence: Sequence) -> bool:
            return sequence.exact or sequence.score_prompt or sequence.position in sequence.media

        if alone(waiting[0]):
            return waiting[:1]
        return [s for s in waiting if not alone(s)]

    def _read_text(self, readers: list[Sequence]) -> tuple[int, list[Sequence]]:
        """Read up to a chunk of prompt text, shared out oldest first; each sequence whose
        prompt this ends is sampled.  Returns the tokens read and the sequences read."""
        # A scored prompt takes logits for every row: fewer rows a step keep that buffer small.
        budget = SCORED_CHUNK if readers[0].score_prompt else self.chunk
        shares: list[tuple[Sequence, int]] = []
        for reading in readers:
            upto = min((start for start in reading.media if start > reading.position), default=len(reading.tokens))
            take = min(upto - reading.position, budget)
            if take <= 0:
                break
            shares.append((reading, take))
            budget -= take
        shares.sort(key=lambda share: share[0].slot.seq_id)  # laid out in slot order, as above
        rows: list[tuple[Sequence, int, int, int]] = []  # sequence, first prompt index, first row, rows
        n = 0
        for reading, take in shares:
            start, left = reading.position, len(reading.tokens) - reading.position
            for i in range(take):
                last = i == take - 1 and take == left
                self._add(n + i, reading.tokens[start + i], reading.n_past + i, reading.slot.seq_id,
                          last or reading.score_prompt)
            reading.slot.extend(reading.tokens[start:start + take], reading.n_past, reading.n_past + take)
            reading.position += take
            reading.n_past += take
            rows.append((reading, start, n, take))
            n += take
        self.stats.prompt_tokens_evaluated += n
        self._decode(n)
        for reading, start, first, take in rows:
            if reading.score_prompt:  # read alone: its rows start at 0
                self._score_prompt(reading, start, take)
            if reading.position < len(reading.tokens):
                continue
            if reading.budget == 0:
                self._finish(reading, "length")
            else:
                self._sample([(reading, first + take - 1)])
        return n, [reading for reading, _ in shares]

    def _read_media(self, reading: Sequence) -> int:
        """Encode the image or audio that starts at the sequence's position and decode it
        into its cells, in as many batches as it needs (one, for a non-causal model)."""
        media = reading.media[reading.position]
        slot = reading.slot
        try:
            if reading.position + media.n_tokens >= len(reading.tokens):
                raise RuntimeError("a prompt may not end with an image or audio")
            end = media.decode(self.ctx, reading.n_past, slot.seq_id, self.batch_size)
        except Exception as exc:  # this sequence fails; the others' cells are untouched
            log.exception("decoding an image or audio failed")
            self.lib.llama_memory_seq_rm(self.memory, slot.seq_id, 0, -1)
            slot.cut(0)
            self._finish(reading, exc)
            return 0
        slot.extend(reading.tokens[reading.position:reading.position + media.n_tokens], reading.n_past, end)
        reading.position += media.n_tokens
        reading.n_past = end
        self.stats.prompt_tokens_evaluated += media.n_tokens
        self.stats.media_decoded += 1
        return media.n_tokens

    def _score_prompt(self, reading: Sequence, start: int, rows: int) -> None:
        """Each decoded row's logits score the prompt token after it."""
        sampler = reading.sampler
        scored = []
        for i in range(rows):
            following = start + i + 1
            if following >= len(reading.tokens):
                break
            logits = sampler.logits(self.ctx, i)
            scored.append(sampler.score(logits, reading.tokens[following], sampler.top_logprobs or 0))
        reading.output.put(("prompt", scored))

    def _decode(self, n: int) -> None:
        self.batch.n_tokens = n
        result = self.lib.llama_decode(self.ctx, self.batch)
        if result != 0:
            raise RuntimeError(f"llama_decode failed ({result})")

    def _sample(self, rows: list[tuple[Sequence, int]]) -> None:
        for sequence, index in rows:
            self._take(sequence, index)

    def _take(self, sequence: Sequence, index: int) -> int | None:
        """Sample the sequence at batch row `index` and send the token; return it while the
        sequence goes on (it is then `pending`), None when this ended it."""
        try:
            token = sequence.sampler.sample(self.ctx, index)
        except Exception as exc:  # one sequence's sampler: that sequence fails, not the others
            log.exception("sampling failed")
            self._finish(sequence, exc)
            return None
        if self.lib.llama_vocab_is_eog(self.vocab, token):
            if sequence.score_prompt:  # a scorer counts every position, the end's too
                sequence.output.put(("eog", (token, sequence.sampler.last)))
            self._finish(sequence, "stop")
            return None
        sequence.generated += 1
        self.stats.tokens_generated += 1
        sequence.output.put(("token", (token, sequence.sampler.last)))
        if sequence.generated >= sequence.budget:
            self._finish(sequence, "length")
            return None
        sequence.pending = token
        return token

    def _finish(self, sequence: Sequence, outcome: str | BaseException) -> None:
        if sequence in self.active:
            self.active.remove(sequence)
        if sequence.slot is not None:
            sequence.slot.sequence = None
        if isinstance(outcome, BaseException):
            sequence.output.put(("error", outcome))
        else:
            sequence.output.put(("end", outcome))
