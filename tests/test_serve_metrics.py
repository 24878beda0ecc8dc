import pytest
from prometheus_client.parser import text_string_to_metric_families

from verticalize.serve.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS,
    METRIC_LABELS,
    METRIC_NAMES,
    REJECT_REASONS,
    ServeMetrics,
    accuracy_of,
)


def samples(m: ServeMetrics) -> list:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    return [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def value(m: ServeMetrics, name: str, **labels) -> float | None:
    found = [s.value for s in samples(m) if s.name == name and s.labels == labels]
    return found[0] if found else None


def exercised() -> ServeMetrics:
    m = ServeMetrics()
    m.observe_request("/v1/classify", "POST", 200, "v1", 0.15)
    m.observe_request("/v1/classify", "POST", 200, "v1", 0.02)
    m.observe_request("/v1/classify", "POST", 503, "v1", 0.001)
    m.observe_batch("v1", "classification", 3)
    m.set_queue_depth("v1", 7)
    m.count_rejected("rate_limited")
    m.observe_feedback("v1", "wrong", 1)
    m.observe_feedback("v1", "slow", None)
    m.set_model("v1", "classification", "champion", test_metric=0.81, test_accuracy=0.9)
    return m


def test_exposed_names_are_exactly_metric_names():
    names = {s.name for s in samples(exercised())}
    assert names == set(METRIC_NAMES)
    for s in samples(exercised()):
        assert set(s.labels) == set(METRIC_LABELS[s.name]), s


def test_values_and_buckets():
    m = exercised()
    labels = {"route": "/v1/classify", "method": "POST", "model_version": "v1"}
    assert value(m, "verticalize_requests_total", **labels, status="200") == 2
    assert value(m, "verticalize_requests_total", **labels, status="503") == 1
    dur = {"route": "/v1/classify", "model_version": "v1"}
    bucket = "verticalize_request_duration_seconds_bucket"
    assert value(m, bucket, **dur, le="0.1") == 2  # 0.001 and 0.02
    assert value(m, bucket, **dur, le="0.15") == 3
    assert value(m, "verticalize_request_duration_seconds_count", **dur) == 3
    batch = {"model_version": "v1", "task": "classification"}
    assert value(m, "verticalize_batch_size_bucket", **batch, le="2.0") == 0
    assert value(m, "verticalize_batch_size_bucket", **batch, le="4.0") == 1
    les = [s.labels["le"] for s in samples(m) if s.name == "verticalize_batch_size_bucket"]
    assert les == [f"{float(b)}" for b in BATCH_BUCKETS] + ["+Inf"]
    assert value(m, "verticalize_queue_depth", model_version="v1") == 7
    assert value(m, "verticalize_rejected_requests_total", reason="rate_limited") == 1
    assert value(m, "verticalize_rejected_requests_total", reason="queue_full") == 0
    assert value(m, "verticalize_feedback_total", model_version="v1", kind="wrong") == 1
    assert value(m, "verticalize_feedback_total", model_version="v1", kind="other") == 0
    assert value(m, "verticalize_feedback_rating_count", model_version="v1") == 1
    info = {"model_version": "v1", "task": "classification", "role": "champion"}
    assert value(m, "verticalize_model_info", **info) == 1
    assert value(m, "verticalize_model_test_accuracy", model_version="v1") == 0.9
    assert value(m, "verticalize_model_test_metric", model_version="v1") == 0.81


def test_latency_buckets_cover_1ms_to_10s_and_the_200ms_objective():
    assert LATENCY_BUCKETS[0] == 0.001 and LATENCY_BUCKETS[-1] == 10.0
    assert 0.2 in LATENCY_BUCKETS and list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_instances_do_not_share_a_registry():
    a, b = ServeMetrics(), ServeMetrics()
    a.observe_request("/v1/ner", "POST", 200, "v9", 0.01)
    assert (
        value(
            a,
            "verticalize_requests_total",
            route="/v1/ner",
            method="POST",
            status="200",
            model_version="v9",
        )
        == 1
    )
    assert not [s for s in samples(b) if s.name == "verticalize_requests_total"]


def test_role_change_and_unload_replace_series():
    m = ServeMetrics()
    m.set_model("v2", "ner", "challenger", 0.7, 0.7)
    m.set_queue_depth("v2", 1)
    m.set_model("v2", "ner", "champion", 0.7, None)
    infos = [s.labels for s in samples(m) if s.name == "verticalize_model_info"]
    assert infos == [{"model_version": "v2", "task": "ner", "role": "champion"}]
    assert value(m, "verticalize_model_test_accuracy", model_version="v2") is None
    m.remove_model("v2")
    gone = {"verticalize_model_info", "verticalize_model_test_metric", "verticalize_queue_depth"}
    assert not [s for s in samples(m) if s.name in gone]
    # counters survive an unload: rates across the switch-over stay right
    assert value(m, "verticalize_feedback_total", model_version="v2", kind="wrong") == 0


def test_unknown_reason_or_kind_is_a_bug():
    m = ServeMetrics()
    with pytest.raises(ValueError, match="rejection reason"):
        m.count_rejected("because")
    with pytest.raises(ValueError, match="feedback kind"):
        m.observe_feedback("v1", "angry", 1)
    assert set(REJECT_REASONS) >= {"rate_limited", "queue_full", "unauthorized", "too_large"}


def test_accuracy_reference_per_task():
    assert accuracy_of({"task": "classification", "metrics": {"accuracy": 0.9}}) == 0.9
    assert accuracy_of({"task": "ner", "metrics": {"entity_f1_micro": 0.6}}) == 0.6
    assert accuracy_of({"task": "ner", "metrics": {"test_entity_f1_micro": 0.5}}) == 0.5
    assert accuracy_of({"task": "generation", "metrics": {"rouge_l": 0.3}}) is None
    assert accuracy_of({"task": "classification", "metrics": {}}) is None
    assert accuracy_of({}) is None
