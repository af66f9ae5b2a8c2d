"""API keys: every endpoint but the health checks needs `Authorization: Bearer <key>`."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import assert_error


@pytest.fixture
def keyed_server(models_dir, make_server):
    return make_server(models_dir, "--api-keys", "k-one,k-two")


def test_missing_or_wrong_key_is_401_in_openai_shape(keyed_server):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k-one"}, {"Authorization": "Bearer"}):
        assert_error(keyed_server.get("/v1/models", headers=headers), 401)
        assert_error(keyed_server.post("/v1/chat/completions", json={}, headers=headers), 401)
        assert_error(keyed_server.get("/system", headers=headers), 401)


def test_health_checks_need_no_key(keyed_server):
    assert keyed_server.get("/healthz").status_code == 200
    assert keyed_server.get("/readyz").status_code == 200


def test_either_key_works_with_the_openai_client(keyed_server):
    for key in ("k-one", "k-two"):
        client = keyed_server.client(api_key=key)
        assert [m.id for m in client.models.list().data] == ["gemma"]
    reply = keyed_server.client(api_key="k-two").chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert reply.choices[0].message.content is not None
    with pytest.raises(openai.AuthenticationError):
        keyed_server.client(api_key="wrong").models.list()


def test_api_key_from_the_environment(models_dir, make_server):
    server = make_server(models_dir, env={"API_KEY": "from-env"})
    assert_error(server.get("/v1/models"), 401)
    assert server.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_cors_preflight_and_headers(models_dir, make_server):
    server = make_server(models_dir, "--cors")
    import requests

    preflight = requests.options(server.url + "/v1/chat/completions", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST"}, timeout=10)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    listing = server.get("/v1/models", headers={"Origin": "http://app.example"})
    assert listing.headers["Access-Control-Allow-Origin"] == "*"
