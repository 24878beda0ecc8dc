"""E7: McNemar and paired bootstrap against statsmodels / SciPy; `compare_runs` on run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from verticalize.errors import VerticalizeError
from verticalize.evaluate.compare import compare_runs, write_comparison
from verticalize.evaluate.margin import code_metric
from verticalize.evaluate.significance import _rng_kwarg, mcnemar, paired_bootstrap
from verticalize.metrics import classification_metrics

LABELS = ["negative", "neutral", "positive"]


def _correctness(both: int, b: int, c: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Per-item correctness with the given 2x2 counts (b: only A right, c: only B right)."""
    a = [True] * both + [True] * b + [False] * c + [False] * neither
    bb = [True] * both + [False] * b + [True] * c + [False] * neither
    return a, bb


# (both right, only A right, only B right, both wrong)
TABLES = [
    (50, 3, 3, 10),  # b == c
    (80, 0, 4, 6),  # b + c small, one side empty
    (40, 2, 9, 5),
    (120, 12, 12, 30),  # b == c, b + c = 24
    (100, 13, 12, 20),  # b + c = 25
    (300, 40, 75, 60),  # large
    (900, 210, 160, 100),
]


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("exact", [True, False])
def test_mcnemar_matches_statsmodels(table, exact):
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    both, b, c, neither = table
    ref = sm.mcnemar([[both, b], [c, neither]], exact=exact, correction=True)
    got = mcnemar(*_correctness(*table), exact=exact)
    assert (got["b"], got["c"], got["exact"]) == (b, c, exact)
    assert got["statistic"] == pytest.approx(float(ref.statistic), rel=1e-12)
    assert got["p_value"] == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-15)


def test_mcnemar_chooses_exact_below_25_discordant_pairs():
    assert mcnemar(*_correctness(120, 12, 12, 30))["exact"] is True  # b + c = 24
    assert mcnemar(*_correctness(100, 13, 12, 20))["exact"] is False  # b + c = 25


def test_mcnemar_no_discordant_pairs_gives_p_one():
    for exact in (None, True, False):
        got = mcnemar([True, False, True], [True, False, True], exact=exact)
        assert (got["b"], got["c"], got["p_value"]) == (0, 0, 1.0)


def _predictions(n: int, acc: float, seed: int) -> tuple[list[str], list[str]]:
    """Gold drug-review sentiment (mostly positive) and predictions right with prob. `acc`."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS, size=n, p=[0.25, 0.15, 0.60])
    return list(gold), _noisy(gold, acc, rng)


def _noisy(gold, acc: float, rng) -> list[str]:
    out = []
    for g in gold:
        if rng.random() < acc:
            out.append(str(g))
        else:
            out.append(str(rng.choice([lab for lab in LABELS if lab != g])))
    return out


def _macro_f1(g, p) -> float:
    return f1_score(g, p, labels=LABELS, average="macro", zero_division=0)


def test_paired_bootstrap_matches_direct_scipy_call():
    gold, pred_a = _predictions(150, 0.70, seed=1)
    pred_b = _noisy(gold, 0.78, np.random.default_rng(2))
    got = paired_bootstrap(gold, pred_a, pred_b, _macro_f1, n_resamples=150, seed=7)

    g, pa, pb = np.asarray(gold), np.asarray(pred_a), np.asarray(pred_b)

    def delta(i):
        return _macro_f1(g[i], pb[i]) - _macro_f1(g[i], pa[i])

    ref = stats.bootstrap(
        (np.arange(len(g)),),
        delta,
        n_resamples=150,
        paired=True,
        vectorized=False,
        confidence_level=0.95,
        method="percentile",
        **_rng_kwarg(7),
    )
    assert got["ci_low"] == ref.confidence_interval.low
    assert got["ci_high"] == ref.confidence_interval.high
    assert got["delta"] == pytest.approx(_macro_f1(gold, pred_b) - _macro_f1(gold, pred_a))
    assert got["ci_low"] <= got["delta"] <= got["ci_high"]
    # reproducible with the same seed, different with another
    assert paired_bootstrap(gold, pred_a, pred_b, _macro_f1, n_resamples=150, seed=7) == got
    other = paired_bootstrap(gold, pred_a, pred_b, _macro_f1, n_resamples=150, seed=8)
    assert other["ci_low"] != got["ci_low"] or other["ci_high"] != got["ci_high"]


def test_paired_bootstrap_clearly_better_b():
    gold, pred_a = _predictions(200, 0.60, seed=3)
    pred_b = _noisy(gold, 0.92, np.random.default_rng(4))
    got = paired_bootstrap(gold, pred_a, pred_b, _macro_f1, n_resamples=200)
    assert got["delta"] > 0.2
    assert got["ci_low"] > 0
    assert got["p_value"] < 0.01
    worse = paired_bootstrap(gold, pred_b, pred_a, _macro_f1, n_resamples=200)
    assert worse["delta"] == pytest.approx(-got["delta"])
    assert worse["ci_high"] < 0 and worse["p_value"] < 0.01


def test_paired_bootstrap_identical_predictions():
    gold, pred = _predictions(100, 0.75, seed=5)
    got = paired_bootstrap(gold, pred, list(pred), _macro_f1, n_resamples=50)
    assert got["delta"] == 0
    assert got["p_value"] == 1.0
    assert got["ci_low"] == got["ci_high"] == 0


def test_fast_metric_equals_classification_metrics():
    rng = np.random.default_rng(11)
    labels = ["negative", "neutral", "positive", "mixed"]  # "mixed": never gold nor predicted
    gold = list(rng.choice(LABELS, size=120, p=[0.3, 0.1, 0.6]))
    pred = [str(p) for p in rng.choice([*LABELS, "unknown"], size=120)]  # one value outside
    ref = classification_metrics(gold, pred, labels)
    codes = {lab: i for i, lab in enumerate([*labels, "unknown"])}
    g = np.array([codes[x] for x in gold])
    p = np.array([codes[x] for x in pred])
    names = ["accuracy"] + [
        f"{avg}_{k}"
        for avg in ("macro", "micro", "weighted")
        for k in ("precision", "recall", "f1")
    ]
    for name in names:
        assert code_metric(name, len(labels), len(codes))(g, p) == pytest.approx(ref[name]), name
    for i, lab in enumerate(labels):
        for kind in ("precision", "recall", "f1"):
            got = code_metric(f"{kind}:{i}", len(labels), len(codes))(g, p)
            assert got == pytest.approx(ref["per_class"][lab][kind])


# -- run folders -------------------------------------------------------------------------------


def _make_run(root: Path, gold, pred, *, name="drugs", task="classification", ids=None) -> Path:
    (root / "eval").mkdir(parents=True)
    (root / "data").mkdir()
    ids = ids or [f"drugs-{i:05d}" for i in range(len(gold))]
    with open(root / "eval" / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
            row = {"id": ids[i], "gold": g, "pred": p, "confidence": 0.5 + (i % 50) / 100}
            fh.write(json.dumps(row) + "\n")
    metrics = classification_metrics(list(gold), list(pred), LABELS)
    report = {"task": task, "name": name, "domain": "medical", "model": {"metrics": metrics}}
    (root / "eval" / "report.json").write_text(json.dumps(report), encoding="utf-8")
    manifest = {"stage": "data", "labels": LABELS, "complete": True}
    (root / "data" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


@pytest.fixture
def runs(tmp_path):
    gold, pred_a = _predictions(200, 0.68, seed=21)
    pred_b = _noisy(gold, 0.88, np.random.default_rng(22))
    a = _make_run(tmp_path / "runA", gold, pred_a, name="drugs-distilbert")
    b = _make_run(tmp_path / "runB", gold, pred_b, name="drugs-roberta")
    return tmp_path, gold, pred_a, pred_b, a, b


def test_compare_clearly_better_b_is_significant(runs):
    tmp_path, gold, pred_a, pred_b, a, b = runs
    res = compare_runs(a, b, n_resamples=200)
    assert res["n"] == 200 and res["name_a"] == "drugs-distilbert"
    m = res["metrics"]["macro_f1"]
    assert m["a"] == pytest.approx(classification_metrics(gold, pred_a, LABELS)["macro_f1"])
    assert m["b"] == pytest.approx(classification_metrics(gold, pred_b, LABELS)["macro_f1"])
    assert m["delta"] == pytest.approx(m["b"] - m["a"]) and m["delta"] > 0
    assert m["ci_low"] > 0 and m["p_value"] < 0.01
    assert res["metrics"]["accuracy"]["ci_low"] > 0
    assert res["significant"] is True and res["mcnemar"]["p_value"] < 0.05
    assert res["mcnemar"]["c"] > res["mcnemar"]["b"]
    v = res["verdict"]
    assert v.startswith("B (runB) is better than A (runA) on macro_f1 by +")
    assert "95% CI [+" in v and "the difference is significant (McNemar p = " in v

    # the fast resampled metric gives the same CI as sklearn's f1_score on the same resamples
    ref = paired_bootstrap(gold, pred_a, pred_b, _macro_f1, n_resamples=200, seed=0)
    assert m["ci_low"] == pytest.approx(ref["ci_low"])
    assert m["ci_high"] == pytest.approx(ref["ci_high"])
    assert m["p_value"] == ref["p_value"]

    path = write_comparison(res, tmp_path / "cmp")
    assert path == tmp_path / "cmp" / "compare.json"
    assert json.loads(path.read_text(encoding="utf-8"))["verdict"] == v


def test_compare_reversed_says_worse(runs):
    *_, a, b = runs
    res = compare_runs(b, a, n_resamples=200)
    assert res["significant"] is True
    assert "is worse than" in res["verdict"]
    assert res["metrics"]["macro_f1"]["ci_high"] < 0


def test_compare_same_predictions_not_significant(tmp_path):
    gold, pred = _predictions(200, 0.75, seed=31)
    a = _make_run(tmp_path / "a", gold, pred)
    b = _make_run(tmp_path / "b", gold, list(pred))
    res = compare_runs(a, b, n_resamples=200)
    assert res["significant"] is False
    assert res["mcnemar"]["p_value"] == 1.0
    for m in res["metrics"].values():
        assert m["delta"] == 0 and m["p_value"] == 1.0
    assert "is equal to" in res["verdict"] and "not significant" in res["verdict"]


def test_compare_aligns_by_id_not_line_order(tmp_path):
    gold, pred_a = _predictions(200, 0.7, seed=41)
    pred_b = _noisy(gold, 0.7, np.random.default_rng(42))
    a = _make_run(tmp_path / "a", gold, pred_a)
    ids = [f"drugs-{i:05d}" for i in range(200)]
    order = np.random.default_rng(0).permutation(200)
    b = _make_run(
        tmp_path / "b",
        [gold[i] for i in order],
        [pred_b[i] for i in order],
        ids=[ids[i] for i in order],
    )
    res = compare_runs(a, b, metrics=("accuracy",), n_resamples=100)
    acc_b = np.mean(np.array(gold) == np.array(pred_b))
    assert res["metrics"]["accuracy"]["b"] == pytest.approx(acc_b)


def test_compare_refuses_different_test_sets(tmp_path):
    gold, pred = _predictions(200, 0.7, seed=51)
    a = _make_run(tmp_path / "a", gold, pred)
    b = _make_run(tmp_path / "b", gold[:180], pred[:180])
    with pytest.raises(VerticalizeError) as e:
        compare_runs(a, b)
    msg = str(e.value)
    assert str(a) in msg and str(b) in msg and "different test sets" in msg
    assert "20 ids only in A" in msg
    assert "Fix: evaluate both runs on the same data split" in msg


def test_compare_refuses_same_ids_different_gold(tmp_path):
    gold, pred = _predictions(200, 0.7, seed=61)
    a = _make_run(tmp_path / "a", gold, pred)
    other_gold = list(gold)
    other_gold[3] = next(lab for lab in LABELS if lab != gold[3])
    b = _make_run(tmp_path / "b", other_gold, pred)
    with pytest.raises(VerticalizeError, match="different gold labels for 1 of them") as e:
        compare_runs(a, b)
    assert "Fix: evaluate both runs on the same data split" in str(e.value)


@pytest.mark.parametrize(
    "missing", ["eval/predictions.jsonl", "eval/report.json", "data/manifest.json"]
)
def test_compare_refuses_missing_files(runs, missing):
    *_, a, b = runs
    (b / missing).unlink()
    with pytest.raises(VerticalizeError) as e:
        compare_runs(a, b)
    msg = str(e.value)
    assert str(b / missing) in msg and str(a) in msg and "Fix: run `verticalize eval" in msg


def test_compare_refuses_non_classification(tmp_path):
    gold, pred = _predictions(50, 0.7, seed=71)
    a = _make_run(tmp_path / "a", gold, pred)
    b = _make_run(tmp_path / "b", gold, pred, task="ner")
    with pytest.raises(VerticalizeError, match="classification runs only"):
        compare_runs(a, b)


def test_compare_refuses_unknown_metric(runs):
    *_, a, b = runs
    with pytest.raises(VerticalizeError, match="not a classification metric"):
        compare_runs(a, b, metrics=("bleu",))
