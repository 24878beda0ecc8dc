import json
import os
import stat
import threading
from datetime import datetime

import pytest
from conftest import write

from verticalize import api
from verticalize.errors import ServeError
from verticalize.serve.feedback import (
    FeedbackStore,
    RecentRequests,
    classify_feedback,
    export_corrections,
    export_feedback,
)

NER_TEXT = "Dr Ann Lee saw a patient in Boston"
PREDICTED = {"entities": [{"start": 3, "end": 10, "type": "PER", "text": "Ann Lee", "score": 0.9}]}


@pytest.mark.parametrize(
    "rating, comment, correction, prediction, latency_ms, kind",
    [
        (5, "", "pos", {"label": "neg", "score": 0.8}, 10, "wrong"),
        (5, "", "neg", {"label": "neg", "score": 0.8}, 10, "other"),
        (None, None, "neg", [{"label": "neg"}], 10, "other"),  # a batch of one
        (4, "", [{"start": 3, "end": 10, "label": "PER"}], PREDICTED, 10, "other"),
        (4, "", [{"start": 3, "end": 10, "label": "LOC"}], PREDICTED, 10, "wrong"),
        (4, "", [], PREDICTED, 10, "wrong"),
        (1, "This is WRONG", None, None, 10, "wrong"),
        (2, "totally incorrect", None, None, 10, "wrong"),
        (2, "回答不对", None, None, 10, "wrong"),
        (1, "分类错误", None, None, 10, "wrong"),
        (4, "wrong? no, fine", None, None, 10, "other"),  # a good rating is not a complaint
        (2, "不错", None, None, 10, "other"),  # 不错 means "not bad"
        (3, "", None, None, 250, "slow"),
        (3, "way too slow", None, None, 10, "slow"),
        (3, "request timeout", None, None, 10, "slow"),
        (3, "太慢了，有点卡顿", None, None, 10, "slow"),
        (5, "慢性胃炎分类正确，银行卡号识别好", None, None, 10, "other"),
        (1, "wrong and slow", "pos", {"label": "neg"}, 900, "wrong"),  # wrong wins
        (5, "", "Paris.", {"choices": [{"message": {"content": " Paris. "}}]}, 10, "other"),
        (5, "", "Lyon.", {"choices": [{"message": {"content": "Paris."}}]}, 10, "wrong"),
    ],
)
def test_classify_feedback(rating, comment, correction, prediction, latency_ms, kind):
    assert classify_feedback(rating, comment, correction, prediction, latency_ms, 200.0) == kind


def test_recent_requests_is_a_bounded_lru():
    recent = RecentRequests(capacity=3)
    for i in range(3):
        recent.remember(f"r{i}", "/v1/classify", "v1", "classification", f"t{i}", "pos", 5.0)
    assert recent.get("r0")["input"] == "t0"  # r0 is now the most recent
    recent.remember("r3", "/v1/classify", "v1", "classification", "t3", "neg", 5.0)
    assert recent.get("r1") is None and len(recent) == 3
    item = recent.get("r3")
    assert item == {
        "request_id": "r3",
        "route": "/v1/classify",
        "model_version": "v1",
        "task": "classification",
        "input": "t3",
        "output": "neg",
        "latency_ms": 5.0,
    }
    item["input"] = "changed"
    assert recent.get("r3")["input"] == "t3"


def test_recent_requests_under_threads():
    recent = RecentRequests(capacity=100)

    def fill(n: int) -> None:
        for i in range(500):
            recent.remember(f"{n}-{i}", "/v1/ner", "v1", "ner", "x", [], 1.0)
            recent.get(f"{n}-{i // 2}")

    threads = [threading.Thread(target=fill, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(recent) == 100


def test_store_records_whole_private_lines(tmp_path):
    store = FeedbackStore(tmp_path / "fb", slow_ms=100.0)
    first = store.record({"request_id": "r1", "rating": 5, "comment": "slow", "latency_ms": 5})
    assert len(first["id"]) == 32 and int(first["id"], 16) >= 0
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert first["kind"] == "slow"
    assert store.record({"request_id": "r2", "kind": "wrong"})["kind"] == "wrong"

    def many(n: int) -> None:
        for i in range(50):
            store.record({"request_id": f"{n}-{i}", "rating": 3, "comment": "好 " * 50})

    threads = [threading.Thread(target=many, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = tmp_path / "fb" / "feedback.jsonl"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 302 and len({r["id"] for r in records}) == 302
    assert records[0] == first


def _store_with(tmp_path, task: str, good: list[dict], bad: list[dict]):
    store = FeedbackStore(tmp_path / "fb")
    for rec in good + bad:
        store.record({"task": task, "rating": 2, "model_version": "v1"} | rec)
    store.record({"task": task, "input": "no correction here", "rating": 5})
    return tmp_path / "fb"


def test_classification_export_feeds_the_data_stage(tmp_path):
    good = [
        {
            "input": f"review number {i} says it is {'good' if i % 2 else 'bad'}",
            "prediction": {"label": "neg"},
            "correction": "pos" if i % 2 else "neg",
        }
        for i in range(30)
    ]
    good.append(
        {"input": ["first text", "second text"], "index": 1, "correction": {"label": "pos"}}
    )
    bad = [
        {"input": "x", "correction": ["not", "a", "label"]},
        {"input": ["a", "b"], "correction": "pos"},  # which text?
        {"correction": "pos"},
        {"task": "ner", "input": "y", "correction": []},
    ]
    folder = _store_with(tmp_path, "classification", good, bad)
    with open(folder / "feedback.jsonl", "a") as fh:
        fh.write('{"cut": ')  # a line torn by a crash
    out = tmp_path / "project" / "feedback.jsonl"
    assert export_corrections(folder, out, "classification") == 31
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[-1]["text"] == "second text" and records[-1]["label"] == "pos"
    assert all(r["source"] == "feedback" and len(r["feedback_id"]) == 32 for r in records)
    skipped = [
        json.loads(line) for line in out.with_suffix(".skipped.jsonl").read_text().splitlines()
    ]
    assert [s["reason"].split(":")[0] for s in skipped] == [
        "bad_correction",
        "ambiguous_input",
        "missing_input",
        "task_mismatch",
        "bad_json",
    ]
    cfg = write(
        tmp_path / "project" / "verticalize.yaml",
        """
        name: from-feedback
        data:
          sources:
            - path: feedback.jsonl
          labels: [neg, pos]
        """,
    )
    m = api.data(cfg, run_dir=tmp_path / "run").manifest
    assert m["in"] == 31 and m["out"] == 31 and not m["dropped"]
    train = [
        json.loads(line) for line in (tmp_path / "run/data/train.jsonl").read_text().splitlines()
    ]
    assert {r["label"] for r in train} == {"neg", "pos"}
    assert all(r["meta"]["source"] == "feedback" for r in train)


def test_ner_and_generation_exports_feed_the_data_stage(tmp_path):
    ner_good = [
        {
            "input": f"{NER_TEXT} {i}",
            "prediction": PREDICTED,
            "correction": [
                {"start": 3, "end": 10, "label": "PER", "text": "Ann Lee"},
                {"start": 28, "end": 34, "type": "LOC"},
            ],
        }
        for i in range(12)
    ]
    ner_bad = [
        {"input": NER_TEXT, "correction": "PER"},
        {"input": NER_TEXT, "correction": [{"start": 3, "end": 99, "label": "PER"}]},
        {"input": NER_TEXT, "correction": [{"start": 3, "end": 10, "label": "PER", "text": "Bob"}]},
    ]
    ner_folder = _store_with(tmp_path / "ner", "ner", ner_good, ner_bad)
    stats = export_feedback(ner_folder, tmp_path / "ner" / "fb.jsonl", "ner")
    assert (stats["exported"], stats["skipped"]) == (12, 3)
    assert stats["reasons"] == {"bad_correction": 3}
    first = json.loads((tmp_path / "ner" / "fb.jsonl").read_text().splitlines()[0])
    assert first["spans"] == [[3, 10, "PER"], [28, 34, "LOC"]]

    gen_good = [
        {
            "input": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Capital of France, take {i}?"},
            ],
            "prediction": {"choices": [{"message": {"content": "Lyon"}}]},
            "correction": "Paris.",
        }
        for i in range(12)
    ]
    gen_good.append({"input": "Complete: the sky is", "correction": {"content": "blue."}})
    gen_bad = [
        {"input": [{"role": "user", "content": "hi"}], "correction": "  "},
        {"input": [{"role": "assistant", "content": "hi"}], "correction": "hello"},
    ]
    gen_folder = _store_with(tmp_path / "gen", "generation", gen_good, gen_bad)
    assert export_corrections(gen_folder, tmp_path / "gen" / "fb.jsonl", "generation") == 13
    first = json.loads((tmp_path / "gen" / "fb.jsonl").read_text().splitlines()[0])
    assert first["messages"][-1] == {"role": "assistant", "content": "Paris."}

    for task, folder, chat in (("ner", "ner", ""), ("generation", "gen", "\n      chat: messages")):
        cfg = write(
            tmp_path / folder / "verticalize.yaml",
            f"name: fb-{task}\ntask: {task}\ndata:\n  sources:\n    - path: fb.jsonl{chat}\n",
        )
        m = api.data(cfg, run_dir=tmp_path / folder / "run").manifest
        assert m["out"] == (12 if task == "ner" else 13) and not m["dropped"], m
        row = json.loads((tmp_path / folder / "run/data/train.jsonl").read_text().splitlines()[0])
        assert row["spans"] if task == "ner" else row["messages"][-1]["role"] == "assistant"


def test_export_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ServeError, match="no feedback recorded"):
        export_corrections(tmp_path / "nowhere", tmp_path / "out.jsonl", "classification")
    FeedbackStore(tmp_path / "fb").record({"input": "a", "correction": "pos"})
    with pytest.raises(ServeError, match="task 'summarize'"):
        export_corrections(tmp_path / "fb", tmp_path / "out.jsonl", "summarize")
    stale = tmp_path / "out.skipped.jsonl"
    stale.write_text("{}\n")
    assert export_corrections(tmp_path / "fb", tmp_path / "out.jsonl", "classification") == 1
    assert not stale.exists()  # no skips this time: an old list would mislead
