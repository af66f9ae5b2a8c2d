"""Schemathesis against the real server and the demo model, on every route of
/openapi.json: no 5xx, no hang, every answer valid for its documented schema, and the
server well afterwards.  Bounded: a few examples per route, short generations."""

from __future__ import annotations

import json
import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conftest import GEMMA_FILE, GEMMA_YAML, place, start_server, stop_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
DEAD = "http://127.0.0.1:9"  # nothing listens here: every fetch the fuzzer asks for fails at once
URL_FIELDS = ("url", "config_url", "uri")
NOT_SERVED = r"^/api/(push|blobs/)"
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.response_headers_conformance]


@schemathesis.serializer("application/json")
def _json_with_nan(context, value) -> bytes:
    """JSON as Python writes it, `NaN` included: what a careless client sends, and the
    server must refuse (the default serializer will not write it at all)."""
    if isinstance(value, bytes):
        return value
    return json.dumps(value, default=str).encode()  # a nested binary value as the text it stands for


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, gemma_gguf):
    folder = tmp_path_factory.mktemp("fuzz") / "models"
    folder.mkdir()
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(GEMMA_YAML.format(model=GEMMA_FILE))
    logs = tmp_path_factory.mktemp("fuzz-logs")
    # Galleries and hubs on a loopback port where nothing listens: no install leaves the machine.
    server = start_server(folder, logs, env={"GALLERIES": f'[{{"name": "dead", "url": "{DEAD}/index.yaml"}}]',
                                             "HF_ENDPOINT": DEAD, "GITHUB_RAW_ENDPOINT": DEAD})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    schema = schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")

    @schema.hook
    def map_body(context, body):
        """Fetches stay on loopback, and generations short: the fuzzer tries shapes, not patience."""
        if isinstance(body, dict):
            for field in URL_FIELDS:
                if isinstance(body.get(field), str):
                    body[field] = f"{DEAD}/x.yaml"
            for field, most in (("max_tokens", 4), ("max_completion_tokens", 4), ("max_new_tokens", 4), ("n", 2),
                                ("steps", 1)):
                if _number(body.get(field)) and body[field] > most:
                    body[field] = most
        return body

    @schema.hook
    def flatmap_body(context, body):
        """Besides each body as generated: its whole numbers written as floats (`2.0`, which
        must read as 2), a NaN in it, and a field nested past the depth limit (both 400s)."""
        if not isinstance(body, dict):
            return st.just(body)
        return st.sampled_from([body, _floats(map_body(context, dict(body))), {**body, "temperature": float("nan")},
                                {**body, "user": _nested(300)}])

    return schema


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _floats(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {key: _floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_floats(item) for item in value]
    return value


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# Ollama's push and blob uploads answer a fixed 501, "not served" (tests/api/test_ollama.py).
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=NOT_SERVED)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_every_route_answers_within_its_documented_shapes(case, fuzzed):
    # What this proves: no 5xx, and every answer (errors included) in its documented status,
    # content type, headers and shape.  Not asked: that every schema-valid body is accepted
    # (an unknown model is a valid string and a 404) nor that every invalid one is refused
    # (unknown fields are ignored, as OpenAI's servers do); nor Allow on a 405, which lists
    # GET for `/models/apply` because OpenAI's bare `/models/{model}` serves that path too.
    case.call_and_validate(timeout=120, checks=CHECKS)


def test_the_server_is_well_after_the_fuzzing(fuzzed, api_schema):
    assert requests.get(fuzzed.url + "/healthz", timeout=5).ok
    assert fuzzed.process.poll() is None
    metrics = requests.get(fuzzed.url + "/metrics", timeout=5).text
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("localhost_ai_requests_total{"):
            endpoint = line.split('endpoint="', 1)[1].split('"', 1)[0]
            counts[endpoint] = counts.get(endpoint, 0) + float(line.rsplit(" ", 1)[1])
    routes = len(list(api_schema.get_all_operations()))
    errors = [line for line in metrics.splitlines() if line.startswith("localhost_ai_requests_total{")
              and 'status="5' in line]
    print(f"\nfuzzing: {sum(counts.values()):.0f} requests on {len(counts)} endpoints ({routes} operations)")
    assert not errors, errors
    assert len(counts) >= routes // 2  # every operation was reached (a route may share its endpoint label)
