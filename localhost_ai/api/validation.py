"""Read a JSON body and check it against the endpoint's JSON Schema, naming the field at
fault; and the generation fields every text endpoint shares, read once."""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache
from typing import Any, Callable

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from localhost_ai.api.keys import SETTINGS
from localhost_ai.config.sampling import SAMPLING_KEYS
from localhost_ai.config.validation import first_problem
from localhost_ai.contract.generate import Generation, Sampling
from localhost_ai.errors import APIError, InvalidRequest
from localhost_ai.settings import Settings


@lru_cache(maxsize=None)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def check(body: Any, schema: dict[str, Any]) -> None:
    problem = first_problem(_validator(json.dumps(schema, sort_keys=True)), body)
    if problem is None:
        return
    param, error = problem.where, problem.error
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else None
        param = f"{param}.{missing}" if param and missing else (missing or param)
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    where = f"'{param}'" if param else "The request body"
    raise InvalidRequest(f"Invalid value for {where}: {_describe(error)}", param=param, code="invalid_value")


def _describe(error: ValidationError) -> str:
    """anyOf errors (nullable fields, string-or-list fields) say which types would do."""
    if error.validator != "anyOf":
        return error.message
    types: list[str] = []
    for sub in error.context or []:
        if sub.validator == "type" and not sub.relative_path:
            expected = sub.validator_value
            types += expected if isinstance(expected, list) else [expected]
    if not types:
        return error.message
    return f"{error.instance!r} is not of type {' or '.join(dict.fromkeys(types))}"


# Bodies larger than this are parsed and checked on a thread, so the event loop (and
# every other request, /healthz included) never waits on one.
OFF_LOOP_BYTES = 256 * 1024

Limits = Callable[[dict[str, Any], Settings], None]


def _exact(text: str) -> float | int:
    """A JSON number written with a fraction or exponent: a whole one within float's exact
    range is that integer (`"n": 2.0` is 2), decided here once for every field."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) <= 2**53 else value


def _parse(raw: bytes, schema: dict[str, Any], limits: Limits | None, settings: Settings) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = json.loads(raw, parse_float=_exact)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError("The request body must be a JSON object.", status=400, type="invalid_request_error", code="invalid_json")
    if limits is not None:
        limits(body, settings)
    check(body, schema)
    return body


async def read_json(request: web.Request, schema: dict[str, Any], limits: Limits | None = None) -> dict[str, Any]:
    """The body, parsed, within `limits` (cheap counts, checked first) and valid for `schema`."""
    raw = await request.read()
    settings = request.app[SETTINGS]
    if len(raw) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(_parse, raw, schema, limits, settings)
    return _parse(raw, schema, limits, settings)


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def generation(body: dict[str, Any]) -> Generation:
    """The generation fields of a checked text request; absent ones are left to the model.
    Nexa's `max_new_tokens` and `stop_words` are aliases of `max_tokens` and `stop`."""
    return Generation(
        sampling=Sampling(**{key: body.get(key) for key in SAMPLING_KEYS}),
        max_tokens=body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_new_tokens"),
        stop=tuple(_stop_list(body.get("stop")) + _stop_list(body.get("stop_words"))),
        n=body.get("n") or 1,
    )
