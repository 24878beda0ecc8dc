"""Retrieval metrics (E1 for ranking): recall@1/5/10, MRR@10 and nDCG@10 (binary gains) of
each query, from the rank of each of its relevant passages among the whole corpus.

A relevant passage's rank counts every passage scored higher and every irrelevant passage
scored the same: ties never help (BM25 gives many passages the same score, 0 when no word is
shared)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# all higher-is-better (verticalize.metrics.lower_is_better)
METRICS = ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10")
CUTOFF = 10  # MRR@10, nDCG@10


def relevant_ranks(scores: np.ndarray, relevant: Sequence[int]) -> np.ndarray:
    """1-based ranks of the `relevant` indices in `scores` (one query's scores of every
    passage), ascending; a tie puts irrelevant passages first, and relevant ones in index
    order."""
    relevant = sorted(set(relevant))
    is_relevant = np.zeros(len(scores), dtype=bool)
    is_relevant[relevant] = True
    ranks = []
    for n, r in enumerate(relevant):
        s = scores[r]
        tied_before = sum(scores[q] == s for q in relevant[:n])
        ranks.append(1 + np.sum(scores > s) + np.sum((scores == s) & ~is_relevant) + tied_before)
    return np.sort(np.asarray(ranks, dtype=np.int64))


def query_metrics(ranks: np.ndarray) -> dict[str, float]:
    """The metrics of one query from the ranks of its relevant passages."""
    ranks = np.asarray(ranks)
    n = len(ranks)
    if n == 0:
        return dict.fromkeys(METRICS, 0.0)
    top = ranks[ranks <= CUTOFF]
    ideal = sum(1 / np.log2(i + 1) for i in range(1, min(n, CUTOFF) + 1))
    return {
        "recall_at_1": float(np.sum(ranks <= 1) / n),
        "recall_at_5": float(np.sum(ranks <= 5) / n),
        "recall_at_10": float(np.sum(ranks <= 10) / n),
        "mrr_at_10": float(1 / top[0]) if len(top) else 0.0,
        "ndcg_at_10": float(np.sum(1 / np.log2(top + 1)) / ideal),
    }


def per_query(scores: np.ndarray, relevant: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """metric -> one value per query; `scores` is [queries, passages], `relevant[i]` the
    passage indices relevant to query i. "rank" holds each query's best relevant rank."""
    rows = []
    best = np.zeros(len(relevant), dtype=np.int64)
    for i, rel in enumerate(relevant):
        ranks = relevant_ranks(scores[i], rel)
        rows.append(query_metrics(ranks))
        best[i] = ranks[0] if len(ranks) else 0
    out = {m: np.array([r[m] for r in rows], dtype=np.float64) for m in METRICS}
    out["rank"] = best
    return out


def mean_metrics(values: dict[str, np.ndarray]) -> dict:
    """The mean of each metric over the queries, and n (queries)."""
    n = len(values[METRICS[0]])
    return {"n": n} | {m: float(values[m].mean()) if n else 0.0 for m in METRICS}
