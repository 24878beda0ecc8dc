"""Retrieval evaluation: each test query ranks the whole corpus — the positives of every
split, the hard negatives and the `embedding.corpus` passages — with the fine-tuned encoder,
the untuned base encoder (same pooling, prefixes and max_length) and BM25; recall@1/5/10,
MRR@10, nDCG@10; the margin over the strongest baseline with a paired bootstrap CI over
queries; an honest verdict; predictions.jsonl (each query's ranks and the model's top 3)."""

from __future__ import annotations

import time

import numpy as np

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.evaluate.margin import strongest_and_margin
from verticalize.models.load import load_encoder
from verticalize.runfolder import RunFolder, write_jsonl
from verticalize.tasks.embedding.bm25 import bm25_scores
from verticalize.tasks.embedding.metrics import METRICS, mean_metrics, per_query
from verticalize.tasks.embedding.model import embed_texts
from verticalize.tasks.embedding.pairs import (
    Corpus,
    add_extra_passages,
    pairs_of,
    passage_key,
    passages_of,
)
from verticalize.tasks.embedding.settings import EmbeddingConfig, settings_of

MAIN = "mrr_at_10"
ALSO = "recall_at_10"  # the verdict names both
TOP = 3  # passages per query in predictions.jsonl
WORST = 10  # queries shown on the report page


def _encode(model, tokenizer, pairs, corpus: Corpus, s: EmbeddingConfig, cfg: Config):
    """(query × passage cosine scores, seconds for the queries, seconds for the corpus)."""
    started = time.perf_counter()
    q = embed_texts(
        model,
        tokenizer,
        [s.query_prefix + p.query for p in pairs],
        cfg.model.max_length,
        cfg.eval.batch_size,
    )
    query_s = time.perf_counter() - started
    started = time.perf_counter()
    c = embed_texts(
        model,
        tokenizer,
        [s.passage_prefix + t for t in corpus.texts],
        cfg.model.max_length,
        cfg.eval.batch_size,
    )
    return q @ c.T, query_s, time.perf_counter() - started


def _system(values: dict, seconds: float, description: str | None = None) -> dict:
    metrics = mean_metrics(values) | {
        "latency_ms_per_example": 1000 * seconds / max(len(values["rank"]), 1)
    }
    return ({"description": description} if description else {}) | {"metrics": metrics}


def evaluate_embedding(
    cfg: Config, folder: RunFolder, data_m: dict, train_m: dict, test: list[dict], out_dir
) -> tuple[dict, float]:
    """(report fields, inference seconds: the test queries and the corpus, fine-tuned)."""
    from transformers import AutoModel, AutoTokenizer

    s = settings_of(cfg)
    pairs = pairs_of(test, s)
    others = [pairs_of(read_split(cfg, folder.root, n), s) for n in ("train", "validation")]
    corpus = passages_of(sum(others, pairs))  # every positive first, then hard negatives
    extra_read = add_extra_passages(cfg, corpus)
    relevant = [[corpus.index[passage_key(p.positive)]] for p in pairs]
    console.print(f"eval: {len(pairs)} test queries against {len(corpus):,} passages")

    model = AutoModel.from_pretrained(folder.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder.model_dir)
    scores, query_s, index_s = _encode(model, tokenizer, pairs, corpus, s, cfg)
    values = {"model": per_query(scores, relevant)}
    top = np.argsort(-scores, axis=1, kind="stable")[:, :TOP]
    del model, scores
    systems = {"model": _system(values["model"], query_s)}
    index_seconds = {"model": round(index_s, 2)}

    for name in cfg.eval.baselines:
        console.print(f"eval: ranking the corpus with the {name} baseline")
        if name == "bm25":
            started = time.perf_counter()
            b_scores, analyzer, index_s = bm25_scores(
                corpus.texts, [p.query for p in pairs], cfg.eval.tfidf_analyzer
            )
            seconds = time.perf_counter() - started - index_s
            what = f"Okapi BM25 (rank-bm25, k1 1.5, b 0.75) over {analyzer} tokens"
        else:  # base_encoder
            base, base_tokenizer = load_encoder(cfg.model.base)
            b_scores, seconds, index_s = _encode(base, base_tokenizer, pairs, corpus, s, cfg)
            what = f"the untuned {cfg.model.base}, same pooling, prefixes and max_length"
            del base
        values[name] = per_query(b_scores, relevant)
        systems[name] = _system(values[name], seconds, what)
        index_seconds[name] = round(index_s, 2)
        del b_scores

    baselines = {n: systems[n] for n in cfg.eval.baselines}
    model_m = systems["model"]["metrics"]
    report = {
        "model": {"path": str(folder.model_dir), "metrics": model_m},
        "baselines": baselines,
        **strongest_and_margin(
            baselines,
            {n: values[n][MAIN] for n in baselines},
            np.zeros(len(pairs)),  # the per-query values already hold the truth
            values["model"][MAIN],
            MAIN,
            lambda gold, per_query_value: float(np.mean(per_query_value)),
            seed=cfg.seed,
        ),
        "summary_metrics": list(METRICS),
        "corpus": {
            "passages": len(corpus),  # distinct; each counted under the first role it has
            **{k: corpus.counts[k] for k in ("positives", "hard_negatives", "extra")},
            "extra_read": extra_read,
            "index_seconds": index_seconds,
        },
        "by_source": by_source(cfg, test, values),
    }
    strongest = (report.get("strongest_baseline") or {}).get("name")
    report["verdict"] = verdict(
        model_m, baselines, strongest, report.get("margin"), len(pairs), len(corpus)
    )
    rows = prediction_rows(test, pairs, corpus, values, top)
    write_jsonl(out_dir / "predictions.jsonl", rows)
    report["worst"] = sorted(rows, key=lambda r: -r["rank"]["model"])[:WORST]
    return report, query_s + index_seconds["model"]


def prediction_rows(test, pairs, corpus: Corpus, values: dict, top: np.ndarray) -> list[dict]:
    """One row per test query: its passage, each system's rank of it, the model's top 3."""
    return [
        {
            "id": r["id"],
            "query": p.query,
            "positive": passage_key(p.positive),
            "rank": {name: int(v["rank"][i]) for name, v in values.items()},
            "top": [{"passage": corpus.keys[j], "text": corpus.texts[j][:300]} for j in top[i]],
        }
        for i, (r, p) in enumerate(zip(test, pairs, strict=True))
    ]


def by_source(cfg: Config, test: list[dict], values: dict) -> list[dict]:
    """Each system's metrics on the test queries of each data source (record ids start with
    s<index>:), when they come from more than one."""
    index = np.array([int(r["id"].split(":")[0][1:]) for r in test], dtype=np.int64)
    found = sorted(set(index.tolist()))
    if len(found) < 2:
        return []
    out = []
    for i in found:
        rows = index == i
        src = cfg.data.sources[i]
        where = f"data.sources[{i}] {src.path}" + (f" ({src.text})" if src.text != "text" else "")
        systems = {
            name: mean_metrics({m: v[m][rows] for m in METRICS}) for name, v in values.items()
        }
        out.append({"source": where, "queries": int(rows.sum()), "systems": systems})
    return out


def _compare(model_m: dict, name: str, b: dict) -> str:
    """How the model compares with one baseline on MRR@10 and recall@10."""
    ahead = [k for k in (MAIN, ALSO) if model_m[k] > b[k]]
    numbers = f"{b[MAIN]:.4f} / {b[ALSO]:.4f}"
    if len(ahead) == 2:
        return f"better than {name} on both ({numbers})"
    if not ahead:
        deltas = f"Δ {model_m[MAIN] - b[MAIN]:+.4f} / {model_m[ALSO] - b[ALSO]:+.4f}"
        return f"NOT better than {name} on either ({numbers}, {deltas})"
    behind = ALSO if ahead == [MAIN] else MAIN
    return f"better than {name} on {ahead[0]} but NOT better on {behind} ({numbers})"


def verdict(
    model_m: dict,
    baselines: dict,
    strongest: str | None,
    margin: dict | None,
    queries: int,
    passages: int,
) -> str:
    """One line: the model against each baseline on MRR@10 and recall@10, then its margin
    over the strongest one (on MRR@10) with the bootstrap CI."""
    head = (
        f"On {queries} test queries ranked against {passages:,} passages, the fine-tuned "
        f"encoder ({MAIN} / {ALSO} {model_m[MAIN]:.4f} / {model_m[ALSO]:.4f}) is "
    )
    if not baselines:
        return head + "not compared with any baseline (eval.baselines is empty)."
    parts = [_compare(model_m, name, b["metrics"]) for name, b in baselines.items()]
    line = head + "; ".join(parts) + "."
    if margin and strongest:
        ci = f"95% CI [{margin['ci_low']:+.4f}, {margin['ci_high']:+.4f}]"
        significant = margin["ci_low"] > 0 or margin["ci_high"] < 0
        line += (
            f" Against {strongest}, the strongest baseline, Δ {MAIN} {margin['delta']:+.4f} "
            f"({ci}, bootstrap p = {margin['p_value']:.3g}"
            f"{'' if significant else '; the CI includes 0'})."
        )
    return line
