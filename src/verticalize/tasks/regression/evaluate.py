"""Regression evaluation: the model and the TF-IDF + ridge baseline on the test split, the
constant (training mean) reference, the margin over the strongest baseline on R² (a paired
bootstrap over test records), an honest verdict; predictions.jsonl.

Metrics are measured on t, the scale training learns: the target, or log1p of it with
`regression.transform: log1p` (report["target"]["scale"] says which); predictions.jsonl
holds values in the target's unit."""

from __future__ import annotations

import time

import numpy as np

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.evaluate.margin import strongest_and_margin
from verticalize.runfolder import RunFolder, write_jsonl
from verticalize.tasks.regression.metrics import METRICS, regression_metrics
from verticalize.tasks.regression.model import Scale, target_of
from verticalize.tasks.regression.settings import settings_of

MAIN = "r2"  # the plugin's main_metric; higher is better, so a positive margin is a gain


def tfidf_ridge(
    train: list[dict],
    val: list[dict],
    test: list[dict],
    alphas: list[float],
    analyzer: str,
    scale: Scale,
) -> dict:
    """TF-IDF (the classification baselines' features) + ridge regression on t: each alpha
    fit on train and scored (R²) on validation, the best refit on train + validation, then
    test. "predictions" are t."""
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.pipeline import make_pipeline

    from verticalize.evaluate.baselines import _DESCRIPTIONS, tfidf_vectorizer

    def texts(records):
        return [r["text"] for r in records]

    def targets(records):
        return scale.forward(np.array([target_of(r) for r in records]))

    started = time.perf_counter()
    fit_on = train + val
    vec, resolved = tfidf_vectorizer(analyzer, texts(fit_on))
    by_alpha: dict[str, float] = {}
    if len(val) >= 2:
        for a in alphas:
            model = make_pipeline(vec, Ridge(alpha=a)).fit(texts(train), targets(train))
            scored = regression_metrics(targets(val), model.predict(texts(val)))
            by_alpha[f"{a:g}"] = scored[MAIN]
        alpha = max(alphas, key=lambda a: by_alpha[f"{a:g}"])
        chosen_by = "validation R²"
        model = make_pipeline(vec, Ridge(alpha=alpha)).fit(texts(fit_on), targets(fit_on))
    else:  # no validation split: efficient leave-one-out on the training records
        model = make_pipeline(vec, RidgeCV(alphas=alphas)).fit(texts(fit_on), targets(fit_on))
        alpha, chosen_by = float(model[-1].alpha_), "leave-one-out on train"
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    pred = model.predict(texts(test)) if test else np.zeros(0)
    infer_s = time.perf_counter() - started
    metrics = regression_metrics(targets(test), pred)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)
    return {
        "name": "tfidf_ridge",
        "description": f"TF-IDF ({_DESCRIPTIONS[resolved]}) + ridge regression (alpha "
        f"{alpha:g}, chosen by {chosen_by}), fit on train+validation",
        "alpha": alpha,
        "validation_r2_by_alpha": by_alpha,
        "metrics": metrics,
        "predictions": [float(x) for x in pred],
        "fit_seconds": round(fit_s, 3),
    }


def r2_of(gold: np.ndarray, pred: np.ndarray) -> float:
    """R² as sklearn's r2_score gives it (a constant gold: 1.0 if exact, else 0.0), without
    its input checks, for many bootstrap resamples."""
    ss_res = float(np.sum((gold - pred) ** 2))
    ss_tot = float(np.sum((gold - gold.mean()) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


def regression_margin(
    baselines: dict, baseline_t: dict, gold_t: np.ndarray, model_t: np.ndarray, seed: int = 0
) -> dict:
    """strongest_and_margin on R² over test records, on t (the metrics' scale): delta = model
    R² - baseline R², bootstrap p (a number is not right or wrong, so no McNemar)."""
    return strongest_and_margin(
        baselines,
        {name: np.asarray(p, dtype=float) for name, p in baseline_t.items()},
        np.asarray(gold_t, dtype=float),
        np.asarray(model_t, dtype=float),
        MAIN,
        r2_of,
        seed=seed,
    )


def verdict(
    model_m: dict,
    baselines: dict,
    scale: Scale,
    strongest: str | None = None,
    margin: dict | None = None,
) -> str:
    """One sentence per baseline on the main metric (R², higher is better), with MAE; the
    strongest baseline's with the margin's paired-bootstrap CI, when there is one."""
    on = " of log1p(target)" if scale.transform == "log1p" else ""
    parts = []
    for name, b in baselines.items():
        bm = b["metrics"]
        delta = model_m[MAIN] - bm[MAIN]
        word = "better than" if delta > 0 else ("equal to" if delta == 0 else "NOT better than")
        ci = ""
        if margin and name == strongest:
            excludes = margin["ci_low"] > 0 or margin["ci_high"] < 0
            ci = (
                f" (the strongest baseline; 95% CI [{margin['ci_low']:+.4f}, "
                f"{margin['ci_high']:+.4f}], bootstrap p = {margin['p_value']:.3g}: the CI "
                + ("excludes 0)" if excludes else "includes 0, so it may be noise)")
            )
        parts.append(
            f"The fine-tuned model (r2 {model_m[MAIN]:.4f}, mae {model_m['mae']:.4f}) is {word} "
            f"the {name} baseline (r2 {bm[MAIN]:.4f}, mae {bm['mae']:.4f}), Δ r2 {delta:+.4f} "
            f"on the test split{on}{ci}."
        )
    return " ".join(parts) or "No baseline was configured."


def evaluate_regression(
    cfg: Config, folder: RunFolder, data_m: dict, train_m: dict, test: list[dict], out_dir
) -> tuple[dict, float]:
    """(report fields, inference seconds)."""
    from verticalize.tasks.regression.serving import Regressor

    train = read_split(cfg, folder.root, "train")
    val = read_split(cfg, folder.root, "validation")
    regressor = Regressor(folder.model_dir, cfg.eval.batch_size)
    scale = regressor.scale
    started = time.perf_counter()
    out = regressor.outputs([r["text"] for r in test]) if test else np.zeros(0)
    infer_s = time.perf_counter() - started
    gold = np.array([target_of(r) for r in test])
    gold_t = scale.forward(gold)
    metrics = regression_metrics(gold_t, out)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)

    baselines, b_t, b_preds = {}, {}, {}
    for name in cfg.eval.baselines:
        console.print(f"eval: fitting the {name} baseline on the same splits")
        alphas = settings_of(cfg).ridge_alphas
        b = tfidf_ridge(train, val, test, alphas, cfg.eval.tfidf_analyzer, scale)
        b_t[name] = np.array(b.pop("predictions"))
        b_preds[name] = scale.inverse(b_t[name])
        baselines[name] = b
    train_t = scale.forward(np.array([target_of(r) for r in train]))
    constant = float(train_t.mean()) if len(train_t) else 0.0
    pred = scale.inverse(out)
    write_jsonl(
        out_dir / "predictions.jsonl",
        (
            {
                "id": r["id"],
                "gold": float(gold[i]),
                "pred": float(pred[i]),
                "abs_error": float(abs(pred[i] - gold[i])),
                **{name: float(p[i]) for name, p in b_preds.items()},
            }
            for i, r in enumerate(test)
        ),
    )
    margin = regression_margin(baselines, b_t, gold_t, out, cfg.seed)
    report = {
        "model": {"path": str(folder.model_dir), "metrics": metrics},
        "baselines": baselines,
        **margin,
        "verdict": verdict(
            metrics,
            baselines,
            scale,
            (margin.get("strongest_baseline") or {}).get("name"),
            margin.get("margin"),
        ),
        "summary_metrics": list(METRICS),
        "target": {
            "scale": scale.transform if scale.transform != "none" else "identity",
            "train": _describe(train_t),
            "test": _describe(gold_t),
            "predictions": _describe(out),
            # predicting the training mean everywhere: R² ≈ 0, the floor any model must clear
            "constant_prediction": {
                "value": constant,
                **regression_metrics(gold_t, np.full(len(gold_t), constant)),
            },
        },
    }
    return report, infer_s


def _describe(values: np.ndarray) -> dict:
    """n, mean, std, min, max (on the metrics' scale)."""
    if len(values) == 0:
        return {"n": 0}
    return {
        "n": int(len(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
