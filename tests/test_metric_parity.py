"""E2 done-when: our metrics agree with scikit-learn / sacrebleu / rouge-score on random data.

Each metric is checked twice: against the reference library, called here with its documented
arguments, and against a plain computation from counts written in this file, so that a wrong
argument (averaging, tokenisation, argument order) shows up as a disagreement.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from verticalize.evaluate.text_metrics import (
    bleu,
    exact_match,
    generation_metrics,
    is_chinese,
    rouge,
)
from verticalize.metrics import classification_metrics

SEEDS = [0, 1, 2, 3, 4, 5]
TOL = 1e-12

# ---------------------------------------------------------------- classification


def _random_classification(seed: int) -> tuple[list[str], list[str], list[str]]:
    """3–6 imbalanced classes; predictions never use 1–2 of them; one extra label that no
    gold record has (for some seeds), as in a test split missing a rare class."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 7))
    labels = [f"class_{i}" for i in range(k)]
    weights = rng.dirichlet(np.full(k, 0.6))  # skewed class frequencies
    n = int(rng.integers(80, 400))
    gold_pool = labels[:-1] if seed % 2 else labels  # odd seeds: last label has no gold record
    w = weights[: len(gold_pool)] / weights[: len(gold_pool)].sum()
    y_true = [gold_pool[i] for i in rng.choice(len(gold_pool), size=n, p=w)]
    dropped = set(rng.choice(labels, size=int(rng.integers(1, 3)), replace=False).tolist())
    pred_pool = [lab for lab in labels if lab not in dropped]
    y_pred = [
        t if (t in pred_pool and rng.random() < 0.6) else str(rng.choice(pred_pool)) for t in y_true
    ]
    assert set(y_pred) <= set(pred_pool) and dropped.isdisjoint(y_pred)
    return y_true, y_pred, labels


def _from_counts(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    """Accuracy, per-class and averaged P/R/F1 from a hand-counted confusion matrix;
    undefined ratios (0/0) count as 0, like zero_division=0."""
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[index[t], index[p]] += 1
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)

    p, r = ratio(tp, predicted), ratio(tp, support)
    f = ratio(2 * p * r, p + r)
    mp, mr = tp.sum() / predicted.sum(), tp.sum() / support.sum()
    return {
        "cm": cm,
        "accuracy": tp.sum() / len(y_true),
        "per_class": (p, r, f, support),
        "macro": (p.mean(), r.mean(), f.mean()),
        "micro": (mp, mr, 2 * mp * mr / (mp + mr) if mp + mr else 0.0),
        "weighted": tuple(float((x * support).sum() / support.sum()) for x in (p, r, f)),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_sklearn(seed: int) -> None:
    y_true, y_pred, labels = _random_classification(seed)
    got = classification_metrics(y_true, y_pred, labels)

    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=TOL)
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        assert got[f"{avg}_precision"] == pytest.approx(p, abs=TOL)
        assert got[f"{avg}_recall"] == pytest.approx(r, abs=TOL)
        assert got[f"{avg}_f1"] == pytest.approx(f, abs=TOL)
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    assert list(got["per_class"]) == labels
    for i, lab in enumerate(labels):
        assert got["per_class"][lab] == {
            "precision": pytest.approx(p[i], abs=TOL),
            "recall": pytest.approx(r[i], abs=TOL),
            "f1": pytest.approx(f[i], abs=TOL),
            "support": int(s[i]),
        }
    assert got["confusion_matrix"] == {
        "labels": labels,
        "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_counts(seed: int) -> None:
    y_true, y_pred, labels = _random_classification(seed)
    got = classification_metrics(y_true, y_pred, labels)
    ref = _from_counts(y_true, y_pred, labels)

    assert got["confusion_matrix"]["matrix"] == ref["cm"].tolist()
    assert got["accuracy"] == pytest.approx(ref["accuracy"], abs=TOL)
    for avg in ("macro", "micro", "weighted"):
        assert (got[f"{avg}_precision"], got[f"{avg}_recall"], got[f"{avg}_f1"]) == pytest.approx(
            ref[avg], abs=TOL
        )
    p, r, f, s = ref["per_class"]
    for i, lab in enumerate(labels):
        one = got["per_class"][lab]
        assert (one["precision"], one["recall"], one["f1"]) == pytest.approx(
            (p[i], r[i], f[i]), abs=TOL
        )
        assert one["support"] == s[i]
    # the random data really has the awkward cases: classes never predicted, rare classes
    assert any(got["per_class"][lab]["precision"] == 0 for lab in labels)
    assert got["micro_f1"] == pytest.approx(got["accuracy"], abs=TOL)  # all labels listed


# ---------------------------------------------------------------- generation

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
]  # fmt: skip
HANZI = list("北京是中国的首都合同期限届满时双方应当书面通知供应商在订单日期后三十天内交付货物")


def _random_pairs(seed: int, vocab: list[str], sep: str, n: int = 60) -> tuple[list, list]:
    """References of 4–18 tokens; hypotheses = the reference after 0–4 random edits."""
    rng = np.random.default_rng(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref = [str(rng.choice(vocab)) for _ in range(int(rng.integers(4, 19)))]
        hyp = list(ref)
        for _ in range(int(rng.integers(0, 5))):
            i = int(rng.integers(len(hyp)))
            op = int(rng.integers(3))
            if op == 0:
                hyp[i] = str(rng.choice(vocab))
            elif op == 1 and len(hyp) > 1:
                del hyp[i]
            else:
                hyp.insert(i, str(rng.choice(vocab)))
        refs.append(sep.join(ref))
        hyps.append(sep.join(hyp))
    return hyps, refs


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _corpus_bleu_from_counts(hyps: list[list[str]], refs: list[list[str]]) -> float:
    """Papineni corpus BLEU-4 (one reference, no smoothing needed when all n-gram orders
    have matches), 0–1 scale."""
    matches, totals = [0] * 4, [0] * 4
    for h, r in zip(hyps, refs, strict=True):
        for n in range(1, 5):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    assert all(matches), "every order needs a match for the unsmoothed formula"
    c, r = sum(len(h) for h in hyps), sum(len(x) for x in refs)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / 4)


def _f1(overlap: int, n_hyp: int, n_ref: int) -> float:
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _rouge_from_counts(hyps: list[list[str]], refs: list[list[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 over pairs, from n-gram overlaps and the longest common subsequence."""
    totals = {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0}
    for h, r in zip(hyps, refs, strict=True):
        for n in (1, 2):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            overlap = sum((hc & rc).values())
            totals[f"rouge_{n}"] += _f1(overlap, sum(hc.values()), sum(rc.values()))
        totals["rouge_l"] += _f1(_lcs(h, r), len(h), len(r))
    return {k: v / len(hyps) for k, v in totals.items()}


def test_lcs_helper() -> None:
    assert _lcs(list("ABCBDAB"), list("BDCABA")) == 4
    assert _lcs([], ["a"]) == 0


class _HanziTokenizer:
    """rouge-score tokenizer written for this test: one token per non-space character."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


@pytest.mark.parametrize("seed", SEEDS)
def test_bleu_english_matches_sacrebleu_and_counts(seed: int) -> None:
    hyps, refs = _random_pairs(seed, WORDS, " ")
    assert not is_chinese(refs)
    reference = sacrebleu.corpus_bleu(hyps, [refs]).score / 100  # default tokenize = 13a
    assert 0.05 < reference < 0.99
    assert bleu(hyps, refs) == pytest.approx(reference, abs=TOL)
    by_hand = _corpus_bleu_from_counts([h.split() for h in hyps], [r.split() for r in refs])
    assert bleu(hyps, refs) == pytest.approx(by_hand, rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_bleu_chinese_matches_sacrebleu_zh_and_counts(seed: int) -> None:
    hyps, refs = _random_pairs(seed, HANZI, "")
    assert is_chinese(refs)
    reference = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score / 100
    assert 0.05 < reference < 0.99
    assert bleu(hyps, refs) == pytest.approx(reference, abs=TOL)
    # sacrebleu's zh tokenizer splits every CJK character: BLEU over characters
    by_hand = _corpus_bleu_from_counts([list(h) for h in hyps], [list(r) for r in refs])
    assert bleu(hyps, refs) == pytest.approx(by_hand, rel=1e-9)
    # forcing the whitespace path gives 13a's (much lower) whole-sentence score
    assert bleu(hyps, refs, chinese=False) == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score / 100, abs=TOL
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_rouge_english_matches_rouge_score_and_counts(seed: int) -> None:
    hyps, refs = _random_pairs(seed, WORDS, " ")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    scores = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    reference = {
        ours: sum(s[theirs].fmeasure for s in scores) / len(scores)
        for ours, theirs in (("rouge_1", "rouge1"), ("rouge_2", "rouge2"), ("rouge_l", "rougeL"))
    }
    got = rouge(hyps, refs)
    assert got == pytest.approx(reference, abs=TOL)
    assert all(0.1 < v < 1 for v in got.values())
    assert got == pytest.approx(
        _rouge_from_counts([h.split() for h in hyps], [r.split() for r in refs]), abs=TOL
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_rouge_chinese_is_character_rouge(seed: int) -> None:
    hyps, refs = _random_pairs(seed, HANZI, "")
    scorer = rouge_scorer.RougeScorer(
        ["rouge1", "rouge2", "rougeL"], use_stemmer=False, tokenizer=_HanziTokenizer()
    )
    scores = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    reference = {
        ours: sum(s[theirs].fmeasure for s in scores) / len(scores)
        for ours, theirs in (("rouge_1", "rouge1"), ("rouge_2", "rouge2"), ("rouge_l", "rougeL"))
    }
    got = rouge(hyps, refs)
    assert got == pytest.approx(reference, abs=TOL)
    assert all(0.1 < v < 1 for v in got.values())
    assert got == pytest.approx(
        _rouge_from_counts([list(h) for h in hyps], [list(r) for r in refs]), abs=TOL
    )
    # rouge-score's default tokenizer keeps only [a-z0-9]: Chinese would score nothing
    default = rouge_scorer.RougeScorer(["rouge1"]).score(refs[0], hyps[0])
    assert default["rouge1"].fmeasure == 0.0


def _normalized(text: str) -> str:
    """The documented exact-match normalisation, written out again for the test."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    while text and text[-1] in ".。!！?？…":
        text = text[:-1]
    return text.strip()


@pytest.mark.parametrize("seed", SEEDS)
def test_exact_match_matches_direct_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hyps, refs, should_match = [], [], []
    for _ in range(80):
        vocab = WORDS if rng.random() < 0.5 else HANZI
        sep = " " if vocab is WORDS else ""
        ref = sep.join(str(rng.choice(vocab)) for _ in range(int(rng.integers(1, 6))))
        kind = int(rng.integers(5))
        if kind == 0:  # identical
            hyp, same = ref, True
        elif kind == 1:  # case, surrounding and doubled whitespace
            hyp, same = "  " + ref.upper().replace(" ", "   ") + " ", True
        elif kind == 2:  # trailing punctuation
            hyp, same = ref + str(rng.choice(["。", ".", "!", "？", "…"])), True
        elif kind == 3:  # full-width forms of ASCII letters
            hyp = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in ref)
            same = True
        else:  # a different answer
            hyp, same = ref + sep + str(rng.choice(vocab)), False
        hyps.append(hyp)
        refs.append(ref)
        should_match.append(same)
    expected = sum(should_match) / len(should_match)
    assert exact_match(hyps, refs) == pytest.approx(expected, abs=TOL)
    direct = sum(_normalized(h) == _normalized(r) for h, r in zip(hyps, refs, strict=True))
    assert exact_match(hyps, refs) == pytest.approx(direct / len(hyps), abs=TOL)
    assert 0 < expected < 1


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_generation_metrics_bundle_agrees(seed: int) -> None:
    for vocab, sep, tokenize in ((WORDS, " ", "13a"), (HANZI, "", "zh")):
        hyps, refs = _random_pairs(seed, vocab, sep)
        got = generation_metrics(hyps, refs)
        assert got["chinese"] is (tokenize == "zh") and got["n"] == len(hyps)
        assert got["bleu"] == pytest.approx(
            sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score / 100, abs=TOL
        )
        tokens = str.split if sep else list
        counts = _rouge_from_counts([tokens(h) for h in hyps], [tokens(r) for r in refs])
        assert {k: got[k] for k in counts} == pytest.approx(counts, abs=TOL)
        assert got["exact_match"] == pytest.approx(
            sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(hyps), abs=TOL
        )
