"""The service over real HTTP: task routes, embeddings, errors in the OpenAI shape, probes,
metrics, feedback, and the headers every response carries (MiniLM classification and NER)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest
from serve_support import (
    LABELS,
    classifier_folder,
    live_server,
    ner_folder,
    settings,
    versioned_copy,
)


@pytest.fixture(scope="module")
def cls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    folder = versioned_copy(classifier_folder(), "reviews-0a1b2c3d", "app-cls")
    with live_server(folder, settings(tmp, max_texts=8, max_input_tokens=64)) as (url, app):
        yield url, app, tmp


@pytest.fixture(scope="module")
def http(cls_server):
    with httpx.Client(base_url=cls_server[0], timeout=60) as client:
        yield client


def assert_openai_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["code"] == code
    assert r.headers["x-request-id"] and r.headers["x-model-version"] == "reviews-0a1b2c3d"
    return error


def test_classify_one_text_and_a_list(http):
    one = http.post("/v1/classify", json={"input": "the drug worked well"})
    assert one.status_code == 200
    body = one.json()
    assert body["model"] == "reviews-0a1b2c3d" == one.headers["x-model-version"]
    [item] = body["data"]
    assert item["label"] in LABELS and set(item["probs"]) == set(LABELS)
    assert sum(item["probs"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["usage"]["prompt_tokens"] == 6  # [CLS] the drug worked well [SEP]
    many = http.post("/v1/classify", json={"input": ["good", "bad", "the drug worked well"]})
    data = many.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    # batching does not change a text's answer
    assert data[2]["probs"] == pytest.approx(item["probs"], abs=1e-3)


def test_every_response_has_a_fresh_request_id(http):
    ids = {http.get("/healthz").headers["x-request-id"] for _ in range(3)}
    ids.add(http.post("/v1/classify", json={}).headers["x-request-id"])
    assert len(ids) == 4


def test_embeddings_through_the_openai_client(cls_server):
    client = openai.OpenAI(base_url=cls_server[0] + "/v1", api_key="unused")
    # the client asks for base64 by default and decodes it
    res = client.embeddings.create(model="any", input=["a headache", "a headache", "the weather"])
    vectors = np.array([d.embedding for d in res.data])
    assert vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-4)
    assert vectors[0] @ vectors[1] == pytest.approx(1.0, abs=1e-5)
    assert vectors[0] @ vectors[2] < 0.99
    floats = client.embeddings.create(model="any", input="a headache", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vectors[0], atol=1e-5)
    assert res.usage.prompt_tokens > 0 and res.model == "reviews-0a1b2c3d"


def test_embeddings_are_the_same_alone_and_in_a_padded_batch(http):
    alone = http.post("/v1/embeddings", json={"input": "short", "encoding_format": "float"})
    mixed = http.post(
        "/v1/embeddings",
        json={"input": ["short", "a much longer text about side effects " * 3]},
    )
    a = np.array(alone.json()["data"][0]["embedding"])
    b = np.array(mixed.json()["data"][0]["embedding"])
    assert np.allclose(a, b, atol=1e-5)


def test_a_route_of_another_task_says_which_task_runs(http):
    r = http.post(
        "/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    )
    error = assert_openai_error(r, 400, "unsupported_task")
    assert "classification" in error["message"] and "/v1/classify" in error["message"]
    assert_openai_error(http.post("/v1/ner", json={"input": "x"}), 400, "unsupported_task")


def test_malformed_json_and_schema_errors_are_4xx_in_openai_shape(http):
    bad = http.post(
        "/v1/classify", content=b'{"input": ', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in assert_openai_error(bad, 400, "invalid_json")["message"]
    missing = http.post("/v1/classify", json={"text": "x"})
    assert assert_openai_error(missing, 422, "invalid_request")["param"] == "input"
    wrong_type = http.post("/v1/classify", json={"input": 3})
    assert_openai_error(wrong_type, 422, "invalid_request")
    not_json = http.post("/v1/classify", content=b"input=x", headers={"content-type": "text/plain"})
    assert not_json.status_code in (400, 422) and "error" in not_json.json()
    assert_openai_error(http.get("/v1/nowhere"), 404, "not_found")
    assert_openai_error(http.get("/v1/classify"), 405, "method_not_allowed")


def test_limits_name_the_limit(http):
    long = http.post("/v1/classify", json={"input": ["fine", "word " * 100]})
    error = assert_openai_error(long, 400, "input_too_long")
    assert "input[1]" in error["message"] and "64" in error["message"]
    many = http.post("/v1/classify", json={"input": ["x"] * 9})
    assert "limit is 8" in assert_openai_error(many, 400, "too_many_inputs")["message"]
    assert_openai_error(http.post("/v1/classify", json={"input": []}), 400, "empty_input")
    surrogate = b'{"input": "bad \\ud800 text"}'
    r = http.post("/v1/classify", content=surrogate, headers={"content-type": "application/json"})
    assert_openai_error(r, 400, "invalid_text")


def test_models_probes_and_schema(http):
    models = http.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["reviews-0a1b2c3d"]
    assert models["data"][0]["task"] == "classification"
    assert http.get("/v1/models/reviews-0a1b2c3d").json()["role"] == "champion"
    assert_openai_error(http.get("/v1/models/other"), 404, "model_not_found")
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"][0]["queue"] == 0
    paths = http.get("/openapi.json").json()["paths"]
    for route in ("/v1/classify", "/v1/embeddings", "/v1/feedback"):
        assert route in paths
    assert "/v1/chat/completions" not in paths  # a classifier's schema has no chat


def test_metrics_count_requests_by_route_template_and_version(http):
    http.post("/v1/classify", json={"input": "counted"})
    http.get("/v1/models/not-a-template-label")
    text = http.get("/metrics").text
    assert 'route="/v1/classify"' in text and 'model_version="reviews-0a1b2c3d"' in text
    assert 'route="/v1/models/{model_id}"' in text  # the template, never the raw path
    assert "not-a-template-label" not in text
    assert 'verticalize_model_test_metric{model_version="reviews-0a1b2c3d"} 0.5' in text


def test_feedback_on_an_earlier_answer_is_stored_and_counted(http, cls_server):
    answer = http.post("/v1/classify", json={"input": ["nice", "the pills made me sick"]})
    rid = answer.headers["x-request-id"]
    predicted = answer.json()["data"][1]["label"]
    other = next(lab for lab in LABELS if lab != predicted)
    r = http.post(
        "/v1/feedback",
        json={"rating": 1, "request_id": rid, "index": 1, "correction": other, "comment": "wrong"},
    )
    assert r.status_code == 200 and r.json()["kind"] == "wrong"
    lines = (cls_server[2] / "feedback" / "feedback.jsonl").read_text().splitlines()
    stored = json.loads(lines[-1])
    assert stored["input"] == "the pills made me sick" and stored["index"] == 1
    assert stored["prediction"]["label"] == predicted and stored["correction"] == other
    assert stored["model_version"] == "reviews-0a1b2c3d"
    direct = http.post("/v1/feedback", json={"rating": 5, "text": "ok", "prediction": "positive"})
    assert direct.json()["kind"] in ("other", "slow")
    metrics = http.get("/metrics").text
    assert (
        'verticalize_feedback_total{kind="wrong",model_version="reviews-0a1b2c3d"} 1.0' in metrics
    )
    unknown = http.post("/v1/feedback", json={"rating": 3, "request_id": "nope"})
    assert_openai_error(unknown, 404, "unknown_request_id")
    assert_openai_error(
        http.post("/v1/feedback", json={"rating": 9, "text": "x"}), 422, "invalid_request"
    )
    assert_openai_error(http.post("/v1/feedback", json={"rating": 3}), 400, "missing_subject")


@pytest.fixture(scope="module")
def ner_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ner")
    with live_server(ner_folder(), settings(tmp)) as (url, app):
        yield url


def test_ner_gives_spans_with_offsets_into_each_text(ner_server):
    texts = ["Anna flew to Paris.", "nothing here"]
    r = httpx.post(ner_server + "/v1/ner", json={"input": texts}, timeout=60)
    assert r.status_code == 200
    assert r.headers["x-model-version"] == "minilm-ner"  # no verticalize.json: folder name
    data = r.json()["data"]
    assert len(data) == 2
    for item, text in zip(data, texts, strict=True):
        for e in item["entities"]:  # a random head tags something; offsets must be exact
            assert text[e["start"] : e["end"]] == e["text"] and e["type"] in ("PER", "LOC")
    emb = httpx.post(ner_server + "/v1/embeddings", json={"input": "Anna"}, timeout=60)
    assert len(emb.json()["data"][0]["embedding"]) == 384
    classify = httpx.post(ner_server + "/v1/classify", json={"input": "x"}, timeout=60)
    assert classify.status_code == 400 and "ner" in classify.json()["error"]["message"]
