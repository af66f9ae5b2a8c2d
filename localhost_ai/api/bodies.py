"""Parsing and checking a JSON request body: plain functions with light imports, so that a
process of their own can run them for large bodies (api/validation.py)."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, Callable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from localhost_ai.config.validation import first_problem
from localhost_ai.errors import APIError, InvalidRequest
from localhost_ai.settings import Settings

Limits = Callable[[dict[str, Any], Settings], None]


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


def _exact(text: str) -> float | int:
    """A JSON number written with a fraction or exponent: a whole one is that integer
    (`"n": 2.0` is 2, `1e16` is 10**16), decided here once for every field, so no float
    reaches a field the schema calls an integer."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return int(value) if value.is_integer() else value


def _no_constant(name: str) -> None:
    """`NaN`, `Infinity` and `-Infinity` are not JSON (RFC 8259), though Python reads them."""
    raise ValueError(f"{name} is not a JSON number")


# No request nests deeper than this: a tool's schema 64 levels deep (contract/schemas.py)
# is about 130 here.  Checked before anything recursive (validation, limits) walks it.
MAX_DEPTH = 256
_TOO_DEEP = object()


def depth_within(value: Any, limit: int) -> bool:
    """Whether `value` nests no deeper than `limit`, found without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return True


def parse(raw: bytes, schema: dict[str, Any], limits: Limits | None, settings: Settings) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = json.loads(raw, parse_float=_exact, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        body = _TOO_DEEP
    if body is _TOO_DEEP or not depth_within(body, MAX_DEPTH):
        raise InvalidRequest(f"The request body nests more than {MAX_DEPTH} levels deep.", code="invalid_json")
    if not isinstance(body, dict):
        raise APIError("The request body must be a JSON object.", status=400, type="invalid_request_error", code="invalid_json")
    try:  # a schema nested deep enough for json.dumps (limits) or the validator to recurse out
        if limits is not None:
            limits(body, settings)
        check(body, schema)
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.", code="invalid_json") from None
    return body
