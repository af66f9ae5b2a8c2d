"""POST /v1/embeddings with the real all-MiniLM-L6-v2, and llama.cpp embeddings."""

from __future__ import annotations

import base64
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import GEMMA_FILE, assert_error, assert_schema, place, start_server, stop_server


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory, minilm_path, gemma_gguf):
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(minilm_path, folder / "minilm")
    (folder / "minilm.yaml").write_text("name: minilm\nbackend: sentence-transformers\nparameters:\n  model: minilm\n")
    (folder / "short.yaml").write_text(
        "name: short\nbackend: sentence-transformers\nbatch_size: 8\nparameters:\n  model: minilm\n")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma-embed.yaml").write_text(
        f"name: gemma-embed\nembeddings: true\ncontext_size: 256\nparameters:\n  model: {GEMMA_FILE}\n")
    (folder / "gemma.yaml").write_text(f"name: gemma\nparameters:\n  model: {GEMMA_FILE}\n")
    server = start_server(folder, tmp_path_factory.mktemp("logs"))
    yield server
    stop_server(server)


SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome.",
             "A cheetah is running behind its prey."]


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_openai_client_embeddings_shape_and_values(embed_server, minilm_model):
    client = embed_server.client()
    reply = client.embeddings.create(model="minilm", input=SENTENCES, encoding_format="float")
    assert_schema(reply.model_dump(exclude_unset=True), "CreateEmbeddingResponse")
    assert [d.index for d in reply.data] == [0, 1, 2, 3]
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (4, 384)
    direct = minilm_model.encode(SENTENCES)
    assert np.allclose(vectors, direct, atol=1e-5)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[3])


def test_float_and_base64_agree(embed_server):
    client = embed_server.client()
    as_float = client.embeddings.create(model="minilm", input="Hello there", encoding_format="float").data[0].embedding
    as_b64 = client.embeddings.create(model="minilm", input="Hello there").data[0].embedding  # the client asks base64
    assert np.allclose(as_float, as_b64, atol=0)
    raw = embed_server.post("/v1/embeddings", json={"model": "minilm", "input": "Hello there", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, np.asarray(as_float, dtype=np.float32))


def test_usage_counts_tokens_with_the_models_tokenizer(embed_server, minilm_model):
    reply = embed_server.client().embeddings.create(model="minilm", input=SENTENCES[:2])
    expected = sum(len(minilm_model.tokenizer(s)["input_ids"]) for s in SENTENCES[:2])
    assert reply.usage.prompt_tokens == expected == reply.usage.total_tokens


def test_token_id_input_gives_the_same_vector_as_its_text(embed_server, minilm_model):
    client = embed_server.client()
    ids = minilm_model.tokenizer(SENTENCES[0])["input_ids"]
    by_text = client.embeddings.create(model="minilm", input=SENTENCES[0], encoding_format="float")
    by_ids = client.embeddings.create(model="minilm", input=ids, encoding_format="float")
    both = client.embeddings.create(model="minilm", input=[ids, minilm_model.tokenizer(SENTENCES[2])["input_ids"]],
                                    encoding_format="float")
    assert np.allclose(by_text.data[0].embedding, by_ids.data[0].embedding, atol=1e-6)
    assert len(both.data) == 2 and by_ids.usage.prompt_tokens == len(ids)


def test_fifty_concurrent_requests_each_get_their_own_vector(embed_server, minilm_model):
    sentences = [f"Sentence number {i} talks about {['cats', 'stars', 'trains', 'rivers', 'music'][i % 5]}." for i in range(50)]
    direct = minilm_model.encode(sentences)
    client = embed_server.client()

    def one(i: int):
        return client.embeddings.create(model="short", input=sentences[i], encoding_format="float").data[0].embedding

    with ThreadPoolExecutor(50) as pool:
        got = np.array(list(pool.map(one, range(50))))
    for i in range(50):
        assert np.allclose(got[i], direct[i], atol=1e-5), i
        nearest = int(np.argmax(direct @ got[i]))
        assert nearest == i
    from prometheus_client.parser import text_string_to_metric_families

    samples = {s.name: s.value for f in text_string_to_metric_families(embed_server.get("/metrics").text)
               for s in f.samples if s.labels.get("model") == "short"}
    assert samples["localhost_ai_batch_calls_sum"] == 50
    assert samples["localhost_ai_batch_calls_count"] < 50, "concurrent requests were encoded together"


def test_long_input_is_truncated_unless_refused(embed_server, minilm_model):
    long_text = "word " * 2000
    reply = embed_server.post("/v1/embeddings", json={"model": "minilm", "input": long_text})
    assert reply.status_code == 200
    assert reply.json()["usage"]["prompt_tokens"] == minilm_model.max_seq_length
    refused = embed_server.post("/v1/embeddings", json={"model": "minilm", "input": long_text, "truncate": False})
    error = assert_error(refused, 400, "input")
    assert error["code"] == "input_too_long"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "minilm"}, "input"),
        ({"model": "minilm", "input": []}, "input"),
        ({"model": "minilm", "input": ["x"] * 3000}, "input"),
        ({"model": "minilm", "input": "x" * 300_000}, "input"),
        ({"model": "minilm", "input": 5}, "input"),
        ({"model": "minilm", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "minilm", "input": "x", "dimensions": 128}, "dimensions"),
        ({"model": "minilm", "input": [[1, 2, 999999]]}, "input"),
        ({"model": "minilm", "input": ""}, "input"),
        ({"model": "gemma", "input": "x"}, "model"),
    ],
)
def test_embedding_errors(embed_server, body, param):
    assert_error(embed_server.post("/v1/embeddings", json=body), 400, param)
    assert embed_server.post("/v1/embeddings", json={"model": "minilm", "input": "still serving"}).status_code == 200


def test_llama_cpp_embeddings_are_pooled_and_normalised(embed_server, gemma_gguf):
    import llama_cpp

    client = embed_server.client()
    reply = client.embeddings.create(model="gemma-embed", input=["The cat sat on the mat.", "Stock prices fell."],
                                     encoding_format="float")
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (2, 640)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    again = client.embeddings.create(model="gemma-embed", input="The cat sat on the mat.", encoding_format="float")
    assert np.allclose(again.data[0].embedding, vectors[0], atol=1e-4)
    vocab = llama_cpp.Llama(model_path=str(gemma_gguf), vocab_only=True, verbose=False)
    expected = sum(len(vocab.tokenize(t.encode(), add_bos=True, special=True)) for t in ["The cat sat on the mat.", "Stock prices fell."])
    assert reply.usage.prompt_tokens == expected
    assert_error(embed_server.post("/v1/chat/completions", json={"model": "gemma-embed", "messages": [{"role": "user", "content": "hi"}]}), 400, "model")
