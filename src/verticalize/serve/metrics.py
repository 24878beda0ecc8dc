"""Prometheus metrics of the service (S5), kept in a registry of their own per instance so
several apps (and tests) in one process never share counters.

The alert rules and the Grafana dashboard in deploy/ use only the names in METRIC_NAMES;
tests/test_deploy.py checks that.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from verticalize.plugins import get_task, task_names

__all__ = [
    "BATCH_BUCKETS",
    "FEEDBACK_KINDS",
    "LATENCY_BUCKETS",
    "METRIC_LABELS",
    "METRIC_NAMES",
    "REJECT_REASONS",
    "ServeMetrics",
    "accuracy_of",
]

# 1 ms … 10 s, dense around the 200 ms p99 objective so the alert's quantile is not coarse
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
RATING_BUCKETS = (1, 2, 3, 4, 5)
REJECT_REASONS = (
    "rate_limited",
    "queue_full",
    "forbidden",
    "unauthorized",
    "too_large",
    "bad_request",
)
FEEDBACK_KINDS = ("wrong", "slow", "other")

# (family name, type, help, labels); counters are named without _total as prometheus_client
# adds it
_FAMILIES = (
    (
        "verticalize_requests",
        "counter",
        "HTTP requests answered, by route template, method, status and model version.",
        ("route", "method", "status", "model_version"),
    ),
    (
        "verticalize_request_duration_seconds",
        "histogram",
        "Time from request received to response sent.",
        ("route", "model_version"),
    ),
    (
        "verticalize_batch_size",
        "histogram",
        "Inputs merged into one forward pass.",
        ("model_version", "task"),
    ),
    ("verticalize_queue_depth", "gauge", "Requests waiting for a batch.", ("model_version",)),
    (
        "verticalize_rejected_requests",
        "counter",
        "Requests refused before reaching a model, by reason.",
        ("reason",),
    ),
    (
        "verticalize_feedback",
        "counter",
        "Feedback received, by model version and kind (wrong, slow, other).",
        ("model_version", "kind"),
    ),
    ("verticalize_feedback_rating", "histogram", "User ratings 1-5.", ("model_version",)),
    (
        "verticalize_model_info",
        "gauge",
        "1 for each loaded model version, with its task and role (champion, challenger).",
        ("model_version", "task", "role"),
    ),
    (
        "verticalize_model_test_metric",
        "gauge",
        "The model's main test metric (classification macro_f1, ner entity_f1_micro, "
        "generation rouge_l).",
        ("model_version",),
    ),
    (
        "verticalize_model_test_accuracy",
        "gauge",
        "Accuracy-like test metric (classification accuracy, ner entity_f1_micro), the "
        "reference for the feedback accuracy alert.",
        ("model_version",),
    ),
)
_BUCKETS = {
    "verticalize_request_duration_seconds": LATENCY_BUCKETS,
    "verticalize_batch_size": BATCH_BUCKETS,
    "verticalize_feedback_rating": RATING_BUCKETS,
}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
METRIC_NAMES: list[str] = [
    name + suffix for name, kind, _, _ in _FAMILIES for suffix in _SUFFIXES[kind]
]
# the labels each exposed sample carries (histogram buckets add `le`)
METRIC_LABELS: dict[str, tuple[str, ...]] = {
    name + suffix: (*labels, "le") if suffix == "_bucket" else labels
    for name, kind, _, labels in _FAMILIES
    for suffix in _SUFFIXES[kind]
}


def accuracy_of(info: dict) -> float | None:
    """The accuracy-like test metric from a verticalize.json dict ({"task", "metrics"}), or
    None when the task has none (generation) or the metric is missing."""
    task = info.get("task", "")
    name = get_task(task).accuracy_metric if task in task_names() else None
    metrics = info.get("metrics") or {}
    value = metrics.get(name, metrics.get(f"test_{name}")) if name else None
    return float(value) if isinstance(value, int | float) else None


class ServeMetrics:
    """Every metric the service exposes, in `registry` (a new CollectorRegistry when None).
    prometheus_client metrics are thread-safe; `set_model` bookkeeping takes a lock."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = CollectorRegistry() if registry is None else registry
        made = {}
        for name, kind, doc, labels in _FAMILIES:
            if kind == "counter":
                made[name] = Counter(name, doc, labels, registry=self.registry)
            elif kind == "gauge":
                made[name] = Gauge(name, doc, labels, registry=self.registry)
            else:
                made[name] = Histogram(
                    name, doc, labels, registry=self.registry, buckets=_BUCKETS[name]
                )
        self.requests = made["verticalize_requests"]
        self.duration = made["verticalize_request_duration_seconds"]
        self.batch_size = made["verticalize_batch_size"]
        self.queue_depth = made["verticalize_queue_depth"]
        self.rejected = made["verticalize_rejected_requests"]
        self.feedback = made["verticalize_feedback"]
        self.rating = made["verticalize_feedback_rating"]
        self.model_info = made["verticalize_model_info"]
        self.test_metric = made["verticalize_model_test_metric"]
        self.test_accuracy = made["verticalize_model_test_accuracy"]
        self._models: dict[str, tuple[str, str]] = {}  # version -> (task, role)
        self._lock = threading.Lock()
        for reason in REJECT_REASONS:  # zero series exist, so rate() sees the first rejection
            self.rejected.labels(reason)

    def observe_request(
        self, route: str, method: str, status: int, model_version: str, seconds: float
    ) -> None:
        """Count one answered request and its latency. `route` must be the route template
        (/v1/classify), never the raw path: every distinct value is a new time series."""
        version = model_version or "none"
        self.requests.labels(route, method, str(status), version).inc()
        self.duration.labels(route, version).observe(max(seconds, 0.0))

    def observe_batch(self, model_version: str, task: str, size: int) -> None:
        """Record the size of one forward-pass batch."""
        self.batch_size.labels(model_version, task).observe(size)

    def set_queue_depth(self, model_version: str, depth: int) -> None:
        """Set how many requests wait for `model_version`'s batcher now."""
        self.queue_depth.labels(model_version).set(depth)

    def count_rejected(self, reason: str) -> None:
        """Count a request refused before the model (reason in REJECT_REASONS)."""
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; use one of {REJECT_REASONS}")
        self.rejected.labels(reason).inc()

    def observe_feedback(self, model_version: str, kind: str, rating: int | None) -> None:
        """Count one feedback record of `kind`; its rating (1-5) goes to the histogram."""
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {kind!r}; use one of {FEEDBACK_KINDS}")
        version = model_version or "none"
        self.feedback.labels(version, kind).inc()
        if rating is not None:
            self.rating.labels(version).observe(rating)

    def set_model(
        self,
        model_version: str,
        task: str,
        role: str,
        test_metric: float | None = None,
        test_accuracy: float | None = None,
    ) -> None:
        """Declare a loaded model version: model_info{version, task, role} = 1 (replacing an
        earlier role of the same version), its test metrics, and zeroed feedback counters so
        the feedback-accuracy alert sees the first 'wrong' as an increase."""
        with self._lock:
            old = self._models.get(model_version)
            if old is not None and old != (task, role):
                self.model_info.remove(model_version, *old)
            self._models[model_version] = (task, role)
            self.model_info.labels(model_version, task, role).set(1)
            _set_or_remove(self.test_metric, model_version, test_metric)
            _set_or_remove(self.test_accuracy, model_version, test_accuracy)
            for kind in FEEDBACK_KINDS:
                self.feedback.labels(model_version, kind)

    def remove_model(self, model_version: str) -> None:
        """Forget an unloaded version's info, test metrics and queue gauge (its counters stay:
        Prometheus needs them to compute rates over the switch-over)."""
        with self._lock:
            old = self._models.pop(model_version, None)
            if old is not None:
                self.model_info.remove(model_version, *old)
            for gauge in (self.test_metric, self.test_accuracy, self.queue_depth):
                _set_or_remove(gauge, model_version, None)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _set_or_remove(gauge: Gauge, model_version: str, value: float | None) -> None:
    if value is not None:
        gauge.labels(model_version).set(float(value))
    else:
        gauge.remove(model_version)  # no-op when absent
