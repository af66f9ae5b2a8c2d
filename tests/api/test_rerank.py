"""POST /v1/rerank and Nexa's POST /v1/reranking, with a cross-encoder made in a fixture
(all-MiniLM-L6-v2's encoder with a relevance head trained briefly: see tests/crossencoder.py)."""

from __future__ import annotations

import math
import shutil

import pytest
import requests

from tests.conftest import assert_error, start_server, stop_server

QUERY = "Where do penguins live?"
DOCUMENTS = [
    "The stock market fell sharply on Monday.",
    "Penguins live in Antarctica and on southern coasts.",
    "Bananas are a good source of potassium.",
]


@pytest.fixture(scope="module")
def rerank_server(tmp_path_factory, cross_encoder_path, minilm_path):
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(cross_encoder_path, folder / "reranker")
    (folder / "reranker.yaml").write_text(
        "name: reranker\nbackend: sentence-transformers\nknown_usecases: [rerank]\nparameters:\n  model: reranker\n")
    shutil.copytree(minilm_path, folder / "minilm")
    (folder / "minilm.yaml").write_text("name: minilm\nbackend: sentence-transformers\nparameters:\n  model: minilm\n")
    server = start_server(folder, tmp_path_factory.mktemp("logs"))
    yield server
    stop_server(server)


def test_rerank_puts_the_relevant_document_first(rerank_server):
    reply = rerank_server.post("/v1/rerank", json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    results = body["results"]
    assert [r["index"] for r in results][0] == 1
    assert results[0]["document"] == {"text": DOCUMENTS[1]}
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert body["usage"]["total_tokens"] > 3 * 8
    assert body["model"] == "reranker"


def test_rerank_top_n_and_return_documents(rerank_server):
    body = rerank_server.post("/v1/rerank", json={
        "model": "reranker", "query": QUERY, "documents": [{"text": d} for d in DOCUMENTS],
        "top_n": 1, "return_documents": False}).json()
    assert body["results"] == [{"index": 1, "relevance_score": body["results"][0]["relevance_score"]}]


def test_nexa_reranking_scores_in_input_order(rerank_server):
    url = "/v1/reranking"
    softmax = rerank_server.post(url, json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS}).json()["result"]
    assert len(softmax) == 3 and math.isclose(sum(softmax), 1.0, rel_tol=1e-6)
    assert max(range(3), key=lambda i: softmax[i]) == 1
    raw = rerank_server.post(url, json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS,
                                        "normalize": False}).json()["result"]
    sigmoid = rerank_server.post(url, json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS,
                                            "normalize_method": "sigmoid", "batch_size": 2}).json()["result"]
    assert sigmoid == pytest.approx([1 / (1 + math.exp(-x)) for x in raw], rel=1e-6)
    none = rerank_server.post(url, json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS,
                                         "normalize_method": "none"}).json()["result"]
    assert none == pytest.approx(raw)
    assert raw[1] > 0 > raw[0]


def test_concurrent_reranks_each_get_their_own_scores(rerank_server):
    from concurrent.futures import ThreadPoolExecutor

    queries = [("Tell me about penguins", 1), ("What is the stock market doing?", 0), ("Are bananas healthy?", 2)] * 5

    def top(item):
        body = {"model": "reranker", "query": item[0], "documents": DOCUMENTS}
        return requests.post(rerank_server.url + "/v1/rerank", json=body, timeout=60).json()["results"][0]["index"]

    with ThreadPoolExecutor(len(queries)) as pool:
        assert list(pool.map(top, queries)) == [expected for _, expected in queries]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/rerank", {"model": "reranker", "documents": ["x"]}, "query"),
        ("/v1/rerank", {"model": "reranker", "query": "q", "documents": []}, "documents"),
        ("/v1/rerank", {"model": "reranker", "query": "q", "documents": ["x"] * 1001}, "documents"),
        ("/v1/rerank", {"model": "reranker", "query": "q", "documents": [5]}, "documents[0]"),
        ("/v1/rerank", {"model": "reranker", "query": "q", "documents": ["x"], "top_n": 0}, "top_n"),
        ("/v1/reranking", {"model": "reranker", "query": "q", "documents": ["x"], "normalize_method": "max"}, "normalize_method"),
        ("/v1/rerank", {"model": "minilm", "query": "q", "documents": ["x"]}, "model"),
        ("/v1/embeddings", {"model": "reranker", "input": "x"}, "model"),
    ],
)
def test_rerank_errors(rerank_server, path, body, param):
    assert_error(rerank_server.post(path, json=body), 400, param)
