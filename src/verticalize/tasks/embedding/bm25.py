"""The lexical baseline: Okapi BM25 (the `rank-bm25` package, k1 1.5, b 0.75) over words —
jieba's for Chinese text, as the TF-IDF baselines segment it, else lower-cased words — or
over characters and character bigrams with `eval.tfidf_analyzer: char`."""

from __future__ import annotations

import re
import time

import numpy as np

from verticalize.evaluate.baselines import jieba_words, resolve_analyzer

_WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


def tokenizer_for(analyzer: str, texts: list[str]):
    """(texts -> tokens, resolved analyzer name): "auto" picks jieba for Chinese corpora."""
    resolved = resolve_analyzer(analyzer, texts)
    if resolved == "jieba":
        return jieba_words, resolved
    if resolved == "char":
        return _chars, resolved
    return lambda text: _WORD.findall(text.lower()), resolved


def _chars(text: str) -> list[str]:
    chars = [c for c in text.lower() if not c.isspace()]
    return chars + [a + b for a, b in zip(chars, chars[1:], strict=False)]


def bm25_scores(
    corpus: list[str], queries: list[str], analyzer: str
) -> tuple[np.ndarray, str, float]:
    """([queries, passages] BM25 scores, the analyzer used, seconds to index the corpus)."""
    from rank_bm25 import BM25Okapi

    started = time.perf_counter()
    tokens, resolved = tokenizer_for(analyzer, corpus)
    index = BM25Okapi([tokens(t) for t in corpus])
    index_s = time.perf_counter() - started
    scores = np.zeros((len(queries), len(corpus)), dtype=np.float64)
    for i, q in enumerate(queries):
        scores[i] = index.get_scores(tokens(q))
    return scores, resolved, index_s
