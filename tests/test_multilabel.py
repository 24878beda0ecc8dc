"""Multi-label classification (task: multilabel): label sets from lists, delimited strings,
Label Studio multi-choice and entity spans; metrics and per-label thresholds; and the bundled
example (WNUT-16 tweets → which entity types each mentions) shortened through the real CLI:
run, plan, predict, export, registry and /v1/classify on a live server."""

from __future__ import annotations

import io
import json
import textwrap

import httpx
import numpy as np
import pytest
from conftest import ROOT, run_cli, shortened, write
from serve_support import live_server, settings

from verticalize import api
from verticalize.config import DataConfig, Source
from verticalize.data.ingest import ingest
from verticalize.data.manifest import Quarantine
from verticalize.data.outputs import read_split
from verticalize.errors import ConfigError
from verticalize.runfolder import RunFolder
from verticalize.tasks.multilabel.labels import MultilabelConfig, parse_label
from verticalize.tasks.multilabel.metrics import multilabel_metrics, tune_thresholds

EXAMPLE = ROOT / "examples" / "tweets-mentions" / "verticalize.yaml"
WNUT_TYPES = {
    "company",
    "facility",
    "geo-loc",
    "movie",
    "musicartist",
    "other",
    "person",
    "product",
    "sportsteam",
    "tvshow",
}


def _parse(row: dict, labels=None, **section):
    return parse_label(
        row,
        Source(path="x.jsonl"),
        DataConfig(sources=[Source(path="x.jsonl")], labels=labels),
        MultilabelConfig(**section),
    )


def test_a_label_set_is_one_sorted_string_or_a_reason():
    assert _parse({"label": ["shipping", "billing", "billing"]}) == ("billing|shipping", None)
    assert _parse({"label": "shipping, billing"}) == ("billing|shipping", None)
    assert _parse({"label": "shipping;billing"}, delimiter=";") == ("billing|shipping", None)
    assert _parse({"label": "refund"}) == ("refund", None)
    assert _parse({"label": []}) == ("(none)", None)  # no label applies
    assert _parse({"label": ""}) == ("(none)", None)
    assert _parse({"label": []}, allow_empty=False) == (None, "missing_label")
    assert _parse({"text": "no label field"}) == (None, "missing_label")
    assert _parse({"label": ["billing", "spam"]}, labels=["billing"]) == (None, "label_not_in_set")
    assert _parse({"label": "a|b"}) == (None, "label_not_in_set")  # the separator is no label
    spans = {"label": None, "spans": [[0, 4, "PER"], [9, 14, "LOC"], [20, 23, "PER"]]}
    assert _parse(spans, from_spans=True) == ("LOC|PER", None)
    assert _parse({"spans": []}, from_spans=True) == ("(none)", None)
    assert _parse({"label": "x"}, from_spans=True) == (None, "missing_label")  # no spans field


def test_metrics_and_tuned_thresholds():
    gold = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    pred = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    m = multilabel_metrics(gold, pred, ["a", "b"])
    # micro: tp 3, fp 1, fn 1; label a: P 1 R 1; label b: P 1/2 R 1/2
    assert m["micro_f1"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["subset_accuracy"] == pytest.approx(0.5)  # rows 0 and 3 wholly right
    assert m["hamming_loss"] == pytest.approx(2 / 8)
    assert m["per_class"]["b"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "support": 2,
        "predicted": 2,
    }
    probs = np.array([[0.9, 0.1], [0.3, 0.2], [0.2, 0.1], [0.1, 0.05]])
    # label a: positives at 0.9 and 0.3, negatives at 0.2 and below: any cut in (0.2, 0.3]
    # separates them; label b never occurs: it keeps the default
    gold = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    cut = tune_thresholds(probs, gold, default=0.5, min_positives=2)
    assert 0.2 < cut[0] <= 0.3 and cut[1] == pytest.approx(0.5)
    # too few positives to trust a tuned cut: the default stays
    assert tune_thresholds(probs, gold, default=0.5, min_positives=3).tolist() == [0.5, 0.5]


def test_margin_over_the_strongest_baseline_is_micro_f1_over_texts():
    from verticalize.evaluate.margin import count_margin
    from verticalize.tasks.multilabel.evaluate import text_counts

    labels = ["a", "b", "c"]
    gold = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1], [0, 0, 0]])
    model = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    strong = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    weak = np.zeros_like(gold)
    # model: tp 7, 8 predicted, 8 gold; strong: tp 5, 7 predicted; weak: nothing predicted
    assert text_counts(gold, model).sum(0).tolist() == [7, 8, 8]
    preds = {"strong": strong, "weak": weak}
    baselines = {n: {"metrics": multilabel_metrics(gold, p, labels)} for n, p in preds.items()}
    micro = multilabel_metrics(gold, model, labels)["micro_f1"]
    assert micro == pytest.approx(14 / 16)
    assert baselines["strong"]["metrics"]["micro_f1"] == pytest.approx(10 / 15)
    counts = {n: text_counts(gold, p) for n, p in preds.items()}
    out = count_margin(baselines, counts, text_counts(gold, model), "micro_f1", seed=3)
    assert out["strongest_baseline"]["name"] == "strong"
    m = out["margin"]
    # the same number sklearn's micro F1 gives on the full test set
    assert m["delta"] == pytest.approx(micro - baselines["strong"]["metrics"]["micro_f1"])
    assert m["delta"] == pytest.approx(14 / 16 - 10 / 15)
    assert m["ci_low"] <= m["delta"] <= m["ci_high"] and 0 <= m["p_value"] <= 1
    assert (m["metric"], m["test"], m["n"]) == ("micro_f1", "bootstrap", 6)
    same = count_margin(
        {"twin": {"metrics": {"micro_f1": micro}}},
        {"twin": text_counts(gold, model)},
        text_counts(gold, model),
        "micro_f1",
    )["margin"]
    assert (same["delta"], same["p_value"]) == (0, 1.0)


def _project(tmp_path, body: str, extra: str = ""):
    return write(tmp_path / "verticalize.yaml", textwrap.dedent(body).lstrip("\n") + extra)


def test_config_names_bad_metrics_and_sections(tmp_path):
    base = """
        name: ml
        task: multilabel
        data:
          sources: [{path: d.jsonl}]
          labels: [billing, shipping]
        """
    (tmp_path / "d.jsonl").write_text('{"text": "x", "label": ["billing"]}\n', "utf-8")
    ok = api.load(
        _project(tmp_path, base, "eval:\n  targets: [{metric: f1:billing, target: 0.5}]\n")
    )
    assert ok.train.early_stopping.metric == "micro_f1" and ok.task_section().delimiter == ","
    cases = {
        "eval:\n  targets: [{metric: accuracy, target: 0.5}]\n": r"targets\[0\].*subset_accuracy",
        "eval:\n  targets: [{metric: f1:refund, target: 0.5}]\n": "refund",
        "train:\n  early_stopping: {metric: latency_ms_per_example}\n": "early_stopping.metric",
        "multilabel:\n  delimeter: ';'\n": "delimeter",
        "eval:\n  baselines: [lightgbm]\n": "lightgbm",
        "  label_bins: {billing: [1, 2]}\n": r"data.label_bins: .*Fix: remove data.label_bins",
    }
    for extra, named in cases.items():
        with pytest.raises(ConfigError, match=named):
            api.load(_project(tmp_path, base, extra))
    with pytest.raises(ConfigError, match=r"data.labels\[1\]: '\|' joins"):
        api.load(_project(tmp_path, base.replace("shipping]", "ship|ping]")))
    single = base.replace("task: multilabel", "task: classification")
    with pytest.raises(ConfigError, match="multilabel"):
        api.load(_project(tmp_path, single, "multilabel:\n  delimiter: ';'\n"))


def _labelstudio(path):
    def task(i, text, *picks):
        annotations = [
            {
                "completed_by": n + 1,
                "result": [{"from_name": "topic", "type": "choices", "value": {"choices": p}}],
            }
            for n, p in enumerate(picks)
        ]
        return {"id": i, "data": {"text": text}, "annotations": annotations}

    tasks = [
        task(1, "my parcel never came and I was charged twice", ["shipping", "billing"]),
        task(2, "the invoice shows the wrong amount", ["billing"]),
        task(3, "lovely weather today, nothing to report", []),  # no pick: not annotated
        # two annotators agree on a set (picked in another order): the agreed set wins
        task(
            4, "refund me, the box arrived broken", ["refund", "shipping"], ["shipping", "refund"]
        ),
        task(5, "where is my order, and why a fee", ["spam", "billing"]),  # spam: not a label
        task(6, "charged for a parcel I never got", ["billing"], ["billing"]),
    ]
    path.write_text(json.dumps(tasks), encoding="utf-8")


def test_label_sets_from_label_studio_multi_choice_and_a_delimited_csv(tmp_path):
    _labelstudio(tmp_path / "tasks.json")
    rows = ["text,tags", '"the courier lost it, refund please","shipping;refund"']
    rows += ['"lovely weather today, nothing to report",']  # an empty cell: no label applies
    rows += [f'"invoice {i} is wrong again",billing' for i in range(6)]
    (tmp_path / "more.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg_path = _project(
        tmp_path,
        """
        name: ls
        task: multilabel
        data:
          sources:
            - {path: tasks.json, format: labelstudio, label: topic}
            - {path: more.csv, label: tags}
          labels: [billing, refund, shipping]
          dedup: {exact: false, near: {enabled: false}}
          split: {validation: 0.0, test: 0.2, stratify: false}
        multilabel: {delimiter: ";", allow_empty: true}
        """,
    )
    cfg = api.load(cfg_path)
    api.data(cfg, tmp_path / "run")
    folder = RunFolder(cfg, tmp_path / "run")
    records = [r for s in ("train", "validation", "test") for r in read_split(cfg, folder.root, s)]
    by_text = {r["text"]: r["label"] for r in records}
    assert by_text["my parcel never came and I was charged twice"] == "billing|shipping"
    assert by_text["the invoice shows the wrong amount"] == "billing"
    assert by_text["refund me, the box arrived broken"] == "refund|shipping"
    assert by_text["the courier lost it, refund please"] == "refund|shipping"
    assert by_text["charged for a parcel I never got"] == "billing"
    assert by_text["lovely weather today, nothing to report"] == "(none)"
    manifest = json.loads((tmp_path / "run/data/manifest.json").read_text("utf-8"))
    assert manifest["labels"] == ["billing", "refund", "shipping"]
    quarantined = [json.loads(x) for x in (tmp_path / "run/data/quarantine.jsonl").open()]
    assert sorted(q["reason"] for q in quarantined) == ["label_not_in_set", "missing_label"]
    # the single-label task refuses a multi-choice pick instead of keeping its first choice
    out = io.StringIO()
    source = Source(path="tasks.json", format="labelstudio", label="topic")
    records, tally, _ = ingest(DataConfig(sources=[source]), tmp_path, 0, Quarantine(out))
    assert [(r["label"], [a["label"] for a in r.get("annotations", [])]) for r in records] == [
        ("billing", []),  # task 2
        (None, ["billing", "billing"]),  # task 6: two annotators, resolved by agreement later
    ]
    assert tally.dropped == {"multi_label": 3, "missing_label": 1}  # tasks 1, 4, 5; 3


# ---------------------------------------------------------------- the example, end to end


SHORT = (
    "data.sources.0.sample=240",
    "train.epochs=1",
    "model.max_length=32",
    "train.lr=3.0e-4",
)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """The example shortened to a tiny real slice, through `verticalize run`, once."""
    run_dir = tmp_path_factory.mktemp("multilabel") / "run"
    done = run_cli("run", str(EXAMPLE), *shortened(run_dir, *SHORT))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_dir


def assert_decided_by_thresholds(chosen: list[str], probs: dict, thresholds: dict) -> None:
    """Labels at or over their threshold are chosen, the others not (probabilities and
    thresholds are rounded to 4 places in the files)."""
    for lab, p in probs.items():
        if lab in chosen:
            assert p >= thresholds[lab] - 1e-4, (lab, p, thresholds[lab])
        else:
            assert p <= thresholds[lab] + 1e-4, (lab, p, thresholds[lab])
    assert set(chosen) <= set(probs)


@pytest.mark.slow
def test_the_example_reports_multilabel_metrics_against_the_baseline(example_run):
    report = json.loads((example_run / "eval/report.json").read_text("utf-8"))
    assert report["task"] == "multilabel"
    m = report["model"]["metrics"]
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "micro_precision"):
        assert 0.0 <= m[key] <= 1.0, key
    assert set(m["per_class"]) == set(report["labels"]) <= WNUT_TYPES
    assert {"precision", "recall", "f1", "support"} <= set(m["per_class"]["person"])
    base = report["baselines"]["tfidf_lr"]
    assert base["C"] in (0.25, 1.0, 4.0, 16.0) and "one-vs-rest" in base["description"]
    assert base["metrics"]["per_class"].keys() == m["per_class"].keys()
    delta = m["micro_f1"] - base["metrics"]["micro_f1"]
    # the only baseline is the strongest: the verdict gives the margin over it with its CI
    assert report["strongest_baseline"]["name"] == "tfidf_lr"
    margin = report["margin"]
    assert (margin["metric"], margin["test"]) == ("micro_f1", "bootstrap")
    assert margin["n"] == report["test_size"] and margin["delta"] == pytest.approx(delta)
    assert "tfidf_lr, the strongest baseline" in report["verdict"]
    assert f"micro_f1 {m['micro_f1']:.4f} vs" in report["verdict"]
    assert [t["metric"] for t in report["targets"]] == ["micro_f1", "hamming_loss"]
    assert report["targets"][1]["direction"] == "min"
    html = (example_run / "eval/report.html").read_text("utf-8")
    assert 'id="per-label"' in html and "<svg" in html and report["verdict"][:40] in html
    assert 'id="margin"' in html
    rows = [json.loads(x) for x in (example_run / "eval/predictions.jsonl").open()]
    assert len(rows) == report["test_size"]
    thresholds = report["model"]["thresholds"]
    for row in rows:  # a label is predicted exactly when its probability clears its cut
        assert_decided_by_thresholds(row["pred"], row["probs"], thresholds)


@pytest.mark.slow
def test_thresholds_export_and_registry(example_run):
    saved = json.loads((example_run / "model/thresholds.json").read_text("utf-8"))
    labels = json.loads((example_run / "data/manifest.json").read_text("utf-8"))["labels"]
    assert list(saved["thresholds"]) == labels and saved["tuned_on"] == "validation"
    assert all(0.0 < t < 1.0 for t in saved["thresholds"].values())
    config = json.loads((example_run / "model/config.json").read_text("utf-8"))
    assert config["problem_type"] == "multi_label_classification"
    export = json.loads((example_run / "export/manifest.json").read_text("utf-8"))
    assert export["published"] and export["metric"] == "micro_f1"
    model = example_run / "export/model"
    assert json.loads((model / "thresholds.json").read_text("utf-8")) == saved
    info = json.loads((model / "verticalize.json").read_text("utf-8"))
    assert info["task"] == "multilabel" and info["labels"] == labels
    card = (model / "README.md").read_text("utf-8")
    assert "multi-label text classification" in card and "/v1/classify" in card
    entry = json.loads((example_run / "registry/manifest.json").read_text("utf-8"))["entry"]
    assert entry["name"] == "tweets-mentions" and entry["metric"] == "micro_f1"
    assert entry["value"] == pytest.approx(info["metrics"]["micro_f1"])


TEXTS = ["Watching the Yankees game with Justin in New York", "good morning everyone"]


@pytest.mark.slow
def test_predict_and_serve_give_the_same_label_sets(example_run, tmp_path):
    model = example_run / "export/model"
    done = run_cli("predict", str(model), "--text", TEXTS[0], "--text", TEXTS[1])
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    thresholds = json.loads((model / "thresholds.json").read_text("utf-8"))["thresholds"]
    assert [r["text"] for r in rows] == TEXTS
    for r in rows:
        assert set(r["probs"]) == set(thresholds)
        assert_decided_by_thresholds(r["labels"], r["probs"], thresholds)
        assert r["label"] == max(r["probs"], key=r["probs"].get)
        assert r["score"] == pytest.approx(r["probs"][r["label"]])
    with (
        live_server(model, settings(tmp_path)) as (url, _app),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        answer = http.post("/v1/classify", json={"input": TEXTS})
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    for served, predicted in zip(data, rows, strict=True):
        assert served["labels"] == predicted["labels"] and served["label"] == predicted["label"]
        assert served["probs"] == pytest.approx(predicted["probs"], abs=1e-3)


@pytest.mark.slow
def test_plan_estimates_the_multilabel_run(example_run):
    opts = [*shortened(example_run, *SHORT), "--json", "--calibrate-steps", "1"]
    done = run_cli("plan", str(EXAMPLE), *opts)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout)
    assert plan["task"] == "multilabel" and plan["params"] > 20_000_000
    assert plan["train_flops"] > 0 and plan["est_seconds"] > 0
    assert {"full", "freeze", "lora"} <= set(plan["methods"])
    lora = plan["methods"]["lora"]
    assert 0 < lora["trainable_params"] < plan["methods"]["full"]["trainable_params"] / 10
