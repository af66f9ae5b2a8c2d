"""Read a JSON body and check it against the endpoint's JSON Schema, naming the field at
fault; and the generation fields every text endpoint shares, read once."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web

from localhost_ai.api.bodies import Limits, parse
from localhost_ai.api.keys import SETTINGS
from localhost_ai.config.sampling import SAMPLING_KEYS, removed_problem
from localhost_ai.contract.generate import Generation, Logprobs, Sampling
from localhost_ai.errors import APIError, BackendError, InvalidRequest


T = TypeVar("T")

# Bodies larger than this are parsed and checked in a process of their own, so the event
# loop (and every other request, /healthz included) never waits on one.
OFF_LOOP_BYTES = 16 * 1024

_pool: ProcessPoolExecutor | None = None


def _parser() -> ProcessPoolExecutor:
    """One process of its own parses large bodies: json.loads holds the GIL for a whole body
    (about 40 ms for 3.5 MB), which on a thread would hold up every other request too.  It
    is forked on the first large body, with everything it runs already imported; it only
    parses and validates (no logging, no locks of the server's)."""
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    return _pool


def close_parser() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


async def in_time(request: web.Request, work: Awaitable[T]) -> T:
    """`work` (reading the body) within --read-timeout: a client that stalls mid-body is
    answered 408 and its connection closed, instead of holding it open for ever."""
    seconds = request.app[SETTINGS].read_timeout
    try:
        return await asyncio.wait_for(work, seconds)
    except asyncio.TimeoutError:
        raise APIError(f"The request body did not arrive within {seconds:g} seconds (--read-timeout).", status=408,
                       type="invalid_request_error", code="request_timeout") from None


async def read_json(request: web.Request, schema: dict[str, Any], limits: Limits | None = None) -> dict[str, Any]:
    """The body, parsed, within `limits` (cheap counts, checked first) and valid for `schema`."""
    raw = await in_time(request, request.read())
    settings = request.app[SETTINGS]
    if len(raw) > OFF_LOOP_BYTES:
        loop = asyncio.get_running_loop()
        for _ in range(2):  # a parsing process that died (killed, out of memory) is replaced once
            try:
                return await loop.run_in_executor(_parser(), parse, raw, schema, limits, settings)
            except BrokenProcessPool:
                close_parser()
        raise BackendError("The server could not parse this body: its parsing process stopped.", code="parser_failed")
    return parse(raw, schema, limits, settings)


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def generation(body: dict[str, Any], logprobs: Logprobs | None = None) -> Generation:
    """The generation fields of a checked text request; absent ones are left to the model.
    Nexa's `max_new_tokens` and `stop_words` are aliases of `max_tokens` and `stop`."""
    removed = removed_problem(body)
    if removed is not None:
        raise InvalidRequest(f"'{removed[0]}': {removed[1]}.", param=removed[0], code="unsupported_parameter")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise InvalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                             param="stream_options", code="invalid_value")
    values = {key: body.get(key) for key in SAMPLING_KEYS}
    if values["dry_sequence_breakers"] is not None:
        values["dry_sequence_breakers"] = tuple(values["dry_sequence_breakers"])
    bias = tuple((int(token), float(value)) for token, value in (body.get("logit_bias") or {}).items())
    maximum = next((body[key] for key in ("max_tokens", "max_completion_tokens", "max_new_tokens")
                    if body.get(key) is not None), None)
    return Generation(
        sampling=Sampling(**values, logit_bias=bias),
        max_tokens=maximum,
        stop=tuple(_stop_list(body.get("stop")) + _stop_list(body.get("stop_words"))),
        n=body.get("n") or 1,
        logprobs=logprobs,
    )



async def off_loop(request: web.Request, work: Callable[[], T]) -> T:
    """Run `work` (reading a large body into a request) on a thread when the body is large."""
    if (request.content_length or 0) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work)
    return work()
