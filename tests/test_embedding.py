"""The embedding task plugin (retrieval): pairs read and quarantined at ingest, splits that keep
every query of a passage together, the multiple-negatives ranking loss and the ranking metrics
against hand computations, config errors; then one real run shared by the slow tests:
all-MiniLM on real English question → answer pairs (the trivia file of chatterbot-corpus,
installed by setup: small, real, several questions share one answer such as "Paris") through
`verticalize run`, `plan`, `predict` and /v1/embeddings on a real server."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, run_cli, shortened, write
from serve_support import live_server, settings

from verticalize import api
from verticalize.errors import ConfigError
from verticalize.predict import model_task
from verticalize.tasks.embedding import detect
from verticalize.tasks.embedding.bm25 import bm25_scores, tokenizer_for
from verticalize.tasks.embedding.metrics import mean_metrics, per_query, relevant_ranks
from verticalize.tasks.embedding.model import PairItems, make_collate, mnrl_loss
from verticalize.tasks.embedding.pairs import Pair, parse_pair, passage_key
from verticalize.tasks.embedding.settings import EmbeddingConfig

BAD_ROWS = [  # one of each malformed row, with the reason it must be quarantined for
    ({"question": "", "answer": "An answer without a question"}, "missing_text"),
    ({"question": "What has no answer?", "answer": ""}, "missing_positive"),
    ({"question": "Which answers are a list?", "answer": ["one", "two"]}, "positive_not_text"),
    (
        {"question": "What is the capital of France?", "answer": "Paris", "wrong": " PARIS "},
        "negative_is_positive",
    ),
]

PROJECT = """
name: tiny-trivia
domain: trivia
task: embedding
seed: 7
data:
  sources:
    - {path: trivia.jsonl, text: question}
    - {path: trivia.tsv, text: question}
  split: {validation: 0.15, test: 0.25}
embedding:
  positive: answer
  negative: wrong
  corpus:
    - {path: science.csv, text: answer}
model:
  max_length: 32
train:
  epochs: 1
  batch_size: 16
  lr: 1.0e-4
eval:
  targets:
    - {metric: mrr_at_10, target: 0.1}
    - {metric: recall_at_10, beat: strongest_baseline}
"""


def _chatterbot(name: str) -> list[list[str]]:
    folder = Path(importlib.util.find_spec("chatterbot_corpus").submodule_search_locations[0])
    return yaml.safe_load((folder / "data" / "english" / name).read_text("utf-8"))["conversations"]


def trivia_project(tmp: Path) -> Path:
    """The 261 trivia question → answer pairs, half as JSONL (plus the bad rows), half as
    TSV; every third pair gets the previous answer as its hard negative; the science file's
    answers are an extra corpus (CSV)."""
    pairs = [c[:2] for c in _chatterbot("trivia.yml")]
    rows = []
    for i, (q, a) in enumerate(pairs):
        row = {"question": q, "answer": a}
        if i % 3 == 0 and i and pairs[i - 1][1].casefold() != a.casefold():
            row["wrong"] = pairs[i - 1][1]
        rows.append(row)
    half = len(rows) // 2
    lines = [json.dumps(r) for r in rows[:half] + [bad for bad, _ in BAD_ROWS]]
    (tmp / "trivia.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(tmp / "trivia.tsv", "w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, ["question", "answer", "wrong"], delimiter="\t")
        out.writeheader()
        out.writerows(rows[half:])
    with open(tmp / "science.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["answer"])
        out.writerows([c[1]] for c in _chatterbot("science.yml"))
    return write(tmp / "verticalize.yaml", PROJECT)


def _ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _records(run_dir: Path) -> dict[str, list[dict]]:
    return {
        s: [json.loads(x) for x in (run_dir / "data" / f"{s}.jsonl").open(encoding="utf-8")]
        for s in ("train", "validation", "test")
    }


# ---------------------------------------------------------------- fast: no model


def test_mnrl_loss_is_cross_entropy_over_scaled_cosines_by_hand():
    """Two queries; candidates p1, p2 (in-batch) and n1 (query 1's hard negative)."""
    f64 = {"dtype": torch.float64}
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]], **f64)  # lengths do not matter: cosine
    p = torch.tensor([[3.0, 0.0], [1.0, 1.0]], **f64)
    n = torch.tensor([[0.0, 1.0]], **f64)
    c = 1 / math.sqrt(2)
    rows = [([1.0, c, 0.0], 0), ([0.0, c, 1.0], 1)]  # cos(q_i, [p1, p2, n1]), right index

    def ce(cosines, right):
        logits = [20 * x for x in cosines]
        return -logits[right] + math.log(sum(math.exp(x) for x in logits))

    expected = sum(ce(*r) for r in rows) / 2
    assert float(mnrl_loss(q, p, n, scale=20.0)) == pytest.approx(expected, rel=1e-9)
    without = sum(ce(cos[:2], right) for cos, right in rows) / 2  # in-batch negatives only
    assert float(mnrl_loss(q, p, None, scale=20.0)) == pytest.approx(without, rel=1e-9)


def test_collate_keeps_only_the_negatives_that_exist():
    class Tok:  # one token per character, id = code point
        def __call__(self, texts, truncation, max_length):
            return {"input_ids": [[ord(ch) for ch in t][:max_length] for t in texts]}

    pairs = [Pair("ab", "cde", "fg"), Pair("h", "ijkl", None)]
    s = EmbeddingConfig(query_prefix="q", passage_prefix="")
    items = PairItems(pairs, Tok(), 3, s)
    assert items.items[0]["parts"] == [3, 3, 2] and items.items[1]["parts"] == [2, 3, 0]
    assert items.truncated() == 2  # "qab" and "ijk" reach max_length 3
    batch = make_collate(0)(items.items)
    assert batch["query_ids"].tolist() == [[ord("q"), ord("a"), ord("b")], [ord("q"), ord("h"), 0]]
    assert batch["negative_ids"].tolist() == [[ord("f"), ord("g")]]
    alone = make_collate(0)(items.items[1:])
    assert alone["negative_ids"].shape == (0, 1)


def test_ranking_metrics_match_hand_computations():
    scores = np.array(
        [
            [0.9, 0.5, 0.7, 0.1, 0.7],  # relevant 2: 0.9 above, the other 0.7 tied → rank 3
            [0.2, 0.9, 0.1, 0.8, 0.05],  # relevant 0 and 3 → ranks 3 and 2
            [0.0, 0.0, 0.0, 0.0, 0.0],  # relevant 1, all tied (BM25, no shared word) → rank 5
        ]
    )
    relevant = [[2], [0, 3], [1]]
    assert relevant_ranks(scores[0], [2]).tolist() == [3]
    assert relevant_ranks(scores[1], [0, 3]).tolist() == [2, 3]
    assert relevant_ranks(scores[2], [1]).tolist() == [5]
    v = per_query(scores, relevant)
    assert v["recall_at_1"].tolist() == [0, 0, 0]
    assert v["recall_at_5"].tolist() == [1, 1, 1]
    assert v["mrr_at_10"] == pytest.approx([1 / 3, 1 / 2, 1 / 5])
    ndcg_2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert v["ndcg_at_10"] == pytest.approx([1 / math.log2(4), ndcg_2, 1 / math.log2(6)])
    m = mean_metrics(v)
    assert m["n"] == 3 and m["mrr_at_10"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 5) / 3)
    # beyond the cutoff: rank 11 of 12 counts for nothing at 10
    far = np.arange(12, 0, -1, dtype=float)  # passage i has rank i + 1
    v = per_query(far[None, :], [[10]])
    assert v["rank"].tolist() == [11]
    assert (v["recall_at_10"][0], v["mrr_at_10"][0], v["ndcg_at_10"][0]) == (0, 0, 0)


def test_pairs_are_parsed_and_passages_keyed_up_to_case_and_spaces():
    s = EmbeddingConfig(positive="answer", negative="wrong")
    key, reason = parse_pair({"answer": "Paris ", "wrong": "Rome"}, None, None, s)
    assert reason is None and key == passage_key("paris") == passage_key(" PARIS\n")
    assert parse_pair({"answer": "Paris"}, None, None, s)[1] is None  # a negative is optional
    assert parse_pair({"answer": "Paris", "wrong": ""}, None, None, s)[1] is None
    for row, reason in [(r, why) for r, why in BAD_ROWS if why != "missing_text"]:
        assert parse_pair(row, None, None, s) == (None, reason), row
    assert parse_pair({"answer": "x", "wrong": {"a": 1}}, None, None, s)[1] == "negative_not_text"


def test_bm25_segments_chinese_with_jieba_and_english_into_words():
    zh = ["申请专利的发明创造涉及国家安全的，按照国家有关规定办理。"]
    tokens, analyzer = tokenizer_for("auto", zh)
    assert analyzer == "jieba" and "发明创造" in tokens(zh[0]) and "，" not in tokens(zh[0])
    tokens, analyzer = tokenizer_for("auto", ["The Andromeda Galaxy."])
    assert analyzer == "word" and tokens("The Andromeda Galaxy.") == ["the", "andromeda", "galaxy"]
    scores, _, _ = bm25_scores(["red apples", "green pears", "blue sky"], ["pears"], "auto")
    assert scores.argmax() == 1 and scores[0, 0] == scores[0, 2] == 0


def test_bad_rows_are_quarantined_and_no_passage_straddles_two_splits(tmp_path):
    cfg = trivia_project(tmp_path)
    result = api.data(cfg, run_dir=tmp_path / "run")
    m = result.manifest
    assert m["labels"] == [] and m["out"] == 261
    assert m["dropped"] == {why: 1 for _, why in BAD_ROWS}
    quarantined = [json.loads(x) for x in (tmp_path / "run/data/quarantine.jsonl").open()]
    assert sorted(q["reason"] for q in quarantined) == sorted(why for _, why in BAD_ROWS)
    splits = _records(tmp_path / "run")
    where: dict[str, set] = {}
    for name, records in splits.items():
        for r in records:
            assert r["label"] == passage_key(r["meta"]["answer"])
            where.setdefault(r["label"], set()).add(name)
    assert all(len(s) == 1 for s in where.values())
    paris = [r for rs in splits.values() for r in rs if r["meta"]["answer"] == "Paris"]
    assert len(paris) == 3  # three questions, one answer: one split
    assert {len(splits[s]) for s in splits} == {157, 39, 65}
    negatives = [r for rs in splits.values() for r in rs if r["meta"].get("wrong")]
    assert len(negatives) > 50


def test_the_law_example_builds_pairs_and_corpus_from_the_statutes(tmp_path):
    """examples/law-retrieval: two kinds of questions per article of 4 laws, read from the
    real SQLite database; both questions of an article in one split; the extra corpus."""
    from verticalize.tasks.embedding.pairs import Corpus, add_extra_passages

    yaml_path = ROOT / "examples/law-retrieval/verticalize.yaml"
    m = api.data(yaml_path, run_dir=tmp_path / "run").manifest
    assert (m["in"], m["out"], m["dropped"]) == (514, 506, {"conflicting_labels": 8})
    assert m["splits"] == {"train": 329, "validation": 51, "test": 126}
    splits = _records(tmp_path / "run")
    where: dict[str, set] = {}
    for name, records in splits.items():
        for r in records:
            where.setdefault(r["label"], set()).add(name)
    assert all(len(s) == 1 for s in where.values())
    test = splits["test"]
    assert {r["id"].split(":")[0] for r in test} == {"s0", "s1"}
    citation = next(r for r in test if r["id"].startswith("s0"))
    assert citation["text"].endswith("规定了什么？") and citation["text"].startswith("《")
    assert citation["meta"]["article"].startswith("《中华人民共和国")
    corpus = Corpus()
    read = add_extra_passages(api.load(yaml_path), corpus)
    assert list(read.values()) == [{"read": 2982}] and len(corpus) == 2982


@pytest.mark.parametrize(
    ("extra", "field", "fix"),
    [
        ("  labels: [a, b]\n", "data.labels", "remove data.labels"),
        ("embedding: {positive: answer, negative: answer}\n", "embedding.negative", "null"),
        ("train: {early_stopping: {metric: macro_f1}}\n", "train.early_stopping.metric", "mrr"),
        ("eval: {targets: [{metric: accuracy, target: 1}]}\n", "eval.targets[0].metric", "recall"),
        ("eval: {baselines: [tfidf_lr]}\n", "eval.baselines[0]", "bm25"),
        ("model: {method: freeze, freeze: {head_only: true}}\n", "model.freeze.head_only", "Fix"),
        ("embedding: {scale: 0}\n", "embedding.scale", "Fix"),
    ],
)
def test_config_errors_name_the_field_and_the_fix(tmp_path, extra, field, fix):
    body = "name: x\ntask: embedding\ndata:\n  sources:\n    - {path: p.csv, text: question}\n"
    (tmp_path / "p.csv").write_text("question,answer\na,b\n", encoding="utf-8")
    cfg = write(tmp_path / "verticalize.yaml", body + extra)
    with pytest.raises(ConfigError) as err:
        api.load(cfg)
    message = str(err.value)
    assert "verticalize.yaml:" in message and field in message and fix in message, message


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ("{path: p.csv, text: question, label_value: x}", "label_value"),
        ("{path: p.csv, text: question, fields: [id]}", "fields"),
        ("{path: p.csv, text: question, label: positive}", "label"),
    ],
)
def test_sources_that_would_lose_the_passage_are_refused(tmp_path, source, field):
    body = f"name: x\ntask: embedding\ndata:\n  sources:\n    - {source}\n"
    (tmp_path / "p.csv").write_text("question,positive\na,b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"data\.sources\[0\]\.{field}.*Fix"):
        api.load(write(tmp_path / "verticalize.yaml", body))


def test_defaults_of_the_embedding_task(tmp_path):
    body = "name: x\ntask: embedding\ndata:\n  sources:\n    - {path: p.csv, text: question}\n"
    (tmp_path / "p.csv").write_text("question,positive\na,b\n", encoding="utf-8")
    cfg = api.load(write(tmp_path / "verticalize.yaml", body))
    assert cfg.embedding.positive == "positive" and cfg.embedding.scale == 20.0
    assert cfg.train.early_stopping.metric == "mrr_at_10"
    assert cfg.eval.baselines == ["bm25", "base_encoder"]
    assert cfg.model.base == "all-MiniLM-L6-v2"


def test_detect_claims_only_folders_trained_for_embeddings(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["BertModel"], "sentence_embedding": {"pooling": "mean"}})
    )
    assert detect(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert not detect(tmp_path) and not detect(tmp_path / "missing")


# ---------------------------------------------------------------- slow: one real run


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`verticalize run` on the trivia pairs: data → train → eval → export → registry."""
    tmp = tmp_path_factory.mktemp("embedding")
    cfg = trivia_project(tmp)
    run_dir = tmp / "run"
    result = _ok(run_cli("run", str(cfg), *shortened(run_dir)))
    return cfg, run_dir, result


@pytest.mark.slow
def test_run_ranks_the_whole_corpus_reports_baselines_and_registers(trained):
    cfg, run_dir, _ = trained
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["task"] == "embedding" and report["test_size"] == 65
    keys = {"recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10"}
    m = report["model"]["metrics"]
    assert keys <= set(m) and m["n"] == 65
    assert 0 <= m["recall_at_1"] <= m["recall_at_5"] <= m["recall_at_10"] <= 1
    assert set(report["baselines"]) == {"bm25", "base_encoder"}
    for b in report["baselines"].values():
        assert keys <= set(b["metrics"]) and b["description"]
    # the corpus: every distinct answer of all splits, the hard negatives, the science answers
    splits = _records(run_dir)
    answers = {passage_key(r["meta"]["answer"]) for rs in splits.values() for r in rs}
    corpus = report["corpus"]
    assert corpus["positives"] == len(answers) and corpus["extra"] > 20
    assert corpus["passages"] == corpus["positives"] + corpus["hard_negatives"] + corpus["extra"]
    # the margin over the strongest baseline on the main metric, paired bootstrap
    strongest = report["strongest_baseline"]
    best = max(report["baselines"], key=lambda n: report["baselines"][n]["metrics"]["mrr_at_10"])
    assert strongest["name"] == best
    margin = report["margin"]
    assert margin["metric"] == "mrr_at_10" and margin["test"] == "bootstrap"
    assert margin["delta"] == pytest.approx(m["mrr_at_10"] - strongest["metrics"]["mrr_at_10"])
    assert margin["ci_low"] <= margin["delta"] <= margin["ci_high"]
    assert 0 <= margin["p_value"] <= 1 and margin["p_value"] == margin["bootstrap_p"]
    assert "bm25" in report["verdict"] and "base_encoder" in report["verdict"]
    assert len(report["by_source"]) == 2 and report["targets"][1]["beat"] == "strongest_baseline"
    # predictions.jsonl: one row per test query; its ranks give the reported metrics
    rows = [json.loads(x) for x in (run_dir / "eval/predictions.jsonl").open()]
    assert [r["id"] for r in rows] == [r["id"] for r in splits["test"]]
    for name, metrics in [("model", m)] + [
        (n, b["metrics"]) for n, b in report["baselines"].items()
    ]:
        ranks = np.array([r["rank"][name] for r in rows])
        mrr = np.where(ranks <= 10, 1 / ranks, 0).mean()
        assert mrr == pytest.approx(metrics["mrr_at_10"]), name
        assert np.mean(ranks <= 10) == pytest.approx(metrics["recall_at_10"]), name
    html = (run_dir / "eval/report.html").read_text()
    assert 'id="margin"' in html and 'id="by-source"' in html and "<svg" in html
    # model/: a plain encoder (AutoModel) that records its pooling
    config = json.loads((run_dir / "model/config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    assert config["sentence_embedding"]["pooling"] == "mean"
    assert detect(run_dir / "model") and model_task(run_dir / "model") == "embedding"
    # export and registry
    export = json.loads((run_dir / "export/manifest.json").read_text())
    assert export["published"] is True and export["metric"] == "mrr_at_10"
    assert export["metrics"]["torch"] == pytest.approx(m["mrr_at_10"])
    assert export["onnx"] is None and export["onnx_reason"]
    info = json.loads((run_dir / "export/model/verticalize.json").read_text())
    assert info["task"] == "embedding" and info["labels"] == []
    card = (run_dir / "export/model/README.md").read_text()
    assert "retrieval embedding" in card and "/v1/embeddings" in card
    assert "pipeline_tag: sentence-similarity" in card
    entry = json.loads((run_dir / "registry/manifest.json").read_text())["entry"]
    assert (entry["version"], entry["alias"], entry["metric"]) == ("1", "champion", "mrr_at_10")


@pytest.mark.slow
def test_predict_gives_normalised_vectors_of_the_model(trained, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from verticalize.serve.engines import mean_pool

    cfg, run_dir, _ = trained
    texts = ["Who was the 37th President of the United States?", "Richard Nixon"]
    out = tmp_path / "pred.jsonl"
    args = ["predict", str(cfg), "--run-dir", str(run_dir), "--output", str(out)]
    _ok(run_cli(*args, "--text", texts[0], "--text", texts[1]))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [set(r) for r in rows] == [{"text", "embedding"}] * 2
    vectors = np.array([r["embedding"] for r in rows])
    assert vectors.shape == (2, 384) and np.linalg.norm(vectors, axis=1) == pytest.approx(1)
    # the same as plain transformers: AutoModel, mean pooling, L2 normalisation
    model = AutoModel.from_pretrained(run_dir / "model").eval()
    tok = AutoTokenizer.from_pretrained(run_dir / "model")
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        plain = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"]).numpy()
    assert vectors == pytest.approx(plain, abs=1e-5)
    exported = api.predict(run_dir / "export/model", texts[:1])[0]["embedding"]
    assert exported == pytest.approx(rows[0]["embedding"], abs=1e-5)


@pytest.mark.slow
def test_plan_describes_the_embedding_workload(trained):
    cfg, run_dir, _ = trained
    r = _ok(run_cli("plan", str(cfg), "--json", "--calibrate-steps", "1", *shortened(run_dir)))
    plan = json.loads(r.stdout)
    assert plan["task"] == "embedding" and plan["params"] > 20_000_000
    assert set(plan["methods"]) == {"full", "freeze", "lora"}
    assert plan["methods"]["freeze"]["trainable_params"] < plan["params"]  # layers, no head
    assert plan["est_seconds"] > 0 and plan["calibration"]["steps"] == 1


@pytest.mark.slow
def test_embeddings_route_serves_the_model_and_classify_is_refused(trained, tmp_path):
    _, run_dir, _ = trained
    texts = ["Who painted the Mona Lisa?", "Leonardo da Vinci"]
    expected = [r["embedding"] for r in api.predict(run_dir / "export/model", texts)]
    with live_server(run_dir / "export/model", settings(tmp_path)) as (url, _app):
        with httpx.Client(base_url=url, timeout=60) as http:
            emb = http.post("/v1/embeddings", json={"input": texts})
            classify = http.post("/v1/classify", json={"input": texts[0]})
            models = http.get("/v1/models")
    assert emb.status_code == 200, emb.text
    body = emb.json()
    assert body["model"].startswith("tiny-trivia-") and body["usage"]["prompt_tokens"] > 0
    for item, want in zip(body["data"], expected, strict=True):
        assert item["embedding"] == pytest.approx(want, abs=1e-4)
    assert classify.status_code == 400
    message = classify.json()["error"]["message"]
    assert "embedding model" in message and "/v1/embeddings" in message
    assert models.json()["data"][0]["task"] == "embedding"
