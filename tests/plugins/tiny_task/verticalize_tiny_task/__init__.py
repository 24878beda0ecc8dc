"""A third-party task plugin, as a package outside verticalize would write it: a TF-IDF +
logistic-regression text classifier (no neural network), registered by the entry point
`verticalize.tasks: tfidf-topic = verticalize_tiny_task:plugin` in its dist-info.

It uses only verticalize's public pieces: the plugin interface, the config's metric check,
the run folder's splits and the shared metric function.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from verticalize.config import check_metric_name
from verticalize.data.outputs import read_split
from verticalize.metrics import classification_metrics
from verticalize.plugins import TaskPlugin

ARCH = "TfidfLogisticRegression"


def check_config(cfg) -> None:
    for i, t in enumerate(cfg.eval.targets):
        check_metric_name(t.metric, cfg.data.labels, ("eval", "targets", i, "metric"))


def train(cfg, folder, out_dir, labels, tracker=None, check=None) -> dict:
    records = read_split(cfg, folder.root, "train")
    started = time.perf_counter()
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(max_iter=2000, class_weight="balanced"),
    )
    model.fit([r["text"] for r in records], [r["label"] for r in records])
    val = read_split(cfg, folder.root, "validation")
    score = (
        classification_metrics(
            [r["label"] for r in val], list(model.predict([r["text"] for r in val])), labels
        )["macro_f1"]
        if val
        else None
    )
    folder.model_dir.mkdir(parents=True, exist_ok=True)
    (folder.model_dir / "model.pkl").write_bytes(pickle.dumps(model))
    (folder.model_dir / "config.json").write_text(
        json.dumps({"architectures": [ARCH], "labels": labels}), encoding="utf-8"
    )
    return {
        "in": len(records),
        "out": len(records),
        "dropped": {},
        "base_model": "tfidf",
        "method": "full",
        "parameters": len(model[0].vocabulary_),
        "trainable_parameters": len(model[0].vocabulary_),
        "steps": 1,
        "epochs_run": 1,
        "best_metric": {"macro_f1": score},
        "best_step": 1,
        "stopped_early": False,
        "resumed_from": None,
        "train_seconds": round(time.perf_counter() - started, 3),
    }


def _load(folder: Path):
    return pickle.loads((folder / "model.pkl").read_bytes())


def evaluate(cfg, folder, data_m, train_m, test, out_dir):
    model = _load(folder.model_dir)
    started = time.perf_counter()
    preds = list(model.predict([r["text"] for r in test]))
    seconds = time.perf_counter() - started
    metrics = classification_metrics([r["label"] for r in test], preds, data_m["labels"])
    return {"model": {"path": str(folder.model_dir), "metrics": metrics}}, seconds


def detect(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return config.get("architectures") == [ARCH]


def predictor(folder: Path, batch_size: int = 32):
    model = _load(folder)
    return lambda texts: [{"label": str(label)} for label in model.predict(texts)]


plugin = TaskPlugin(
    name="tfidf-topic",
    description="a TF-IDF + logistic-regression classifier (a test plugin)",
    default_base="tfidf",
    main_metric="macro_f1",
    default_stop_metric="macro_f1",
    summary_metrics=["accuracy", "macro_f1"],
    check_config=check_config,
    min_classes=2,
    train=train,
    evaluate=evaluate,
    export_labels=lambda cfg, out, data_m: list(data_m.get("labels") or []),
    detect=detect,
    predictor=predictor,
)
