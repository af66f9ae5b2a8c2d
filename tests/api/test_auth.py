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
    server = make_server(models_dir, "--cors", "--cors-allow-origins", "*")
    import requests

    preflight = requests.options(server.url + "/v1/chat/completions", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST"}, timeout=10)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    listing = server.get("/v1/models", headers={"Origin": "http://app.example"})
    assert listing.headers["Access-Control-Allow-Origin"] == "*"


def test_a_web_page_elsewhere_cannot_change_the_server(models_dir, make_server):
    import requests

    server = make_server(models_dir)
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    response = requests.post(server.url + "/backend/shutdown", data='{"model": "gemma"}', headers=evil, timeout=10)
    assert_error(response, 403)
    assert_error(requests.post(server.url + "/models/galleries", data='{"name": "x", "url": "https://x/y"}',
                               headers=evil, timeout=10), 403)
    assert [g["name"] for g in server.get("/models/galleries").json()] == ["localhost-ai"]
    # the server's own pages, curl and SDKs (no Origin) are unaffected
    same = requests.post(server.url + "/backend/shutdown", json={"model": "gemma"},
                         headers={"Origin": server.url}, timeout=10)
    assert same.status_code == 200


def test_cors_headers_are_on_errors_too(models_dir, make_server):
    import requests

    server = make_server(models_dir, "--cors", "--cors-allow-origins", "*", "--api-keys", "k")
    origin = {"Origin": "http://app.example"}
    unauthorised = requests.get(server.url + "/v1/models", headers=origin, timeout=10)
    assert unauthorised.status_code == 401 and unauthorised.headers["Access-Control-Allow-Origin"] == "*"
    missing = requests.get(server.url + "/v1/models/nope", headers={**origin, "Authorization": "Bearer k"}, timeout=10)
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == "*"
    allowed_write = requests.post(server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 1},
                                  headers={**origin, "Authorization": "Bearer k"}, timeout=60)
    assert allowed_write.status_code == 200
