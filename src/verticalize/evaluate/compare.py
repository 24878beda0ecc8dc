"""`verticalize eval --compare runA runB` (E7): two classification runs on one test set.

Per metric: A, B, delta = B - A with a paired bootstrap CI and p; McNemar's test on per-item
correctness decides whether the difference is significant.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from verticalize.errors import EvalError
from verticalize.evaluate.margin import code_metric
from verticalize.evaluate.significance import mcnemar, paired_bootstrap
from verticalize.metrics import classification_metrics, metric_value
from verticalize.plugins import get_task, task_names
from verticalize.runfolder import read_jsonl, write_json_atomic

SAME_SPLIT_FIX = "Fix: evaluate both runs on the same data split (same data section and seed)."
_AVERAGED = {
    f"{avg}_{kind}"
    for avg in ("macro", "micro", "weighted")
    for kind in ("precision", "recall", "f1")
}


def _load_run(run: Path, other: Path) -> dict:
    """predictions.jsonl, labels and name of one run folder, or a clear refusal."""
    run = Path(run)
    files = {
        "predictions": run / "eval" / "predictions.jsonl",
        "report": run / "eval" / "report.json",
        "data_manifest": run / "data" / "manifest.json",
    }
    for key, path in files.items():
        if not path.is_file():
            raise EvalError(
                f"{path}: not found, so runs {run} and {other} cannot be compared ({key} missing). "
                f"Fix: run `verticalize eval <yaml> --run-dir {run}` (after its data and train "
                "stages) so the run folder holds eval/predictions.jsonl, eval/report.json and "
                "data/manifest.json."
            )
    try:
        report = json.loads(files["report"].read_text(encoding="utf-8"))
        data_m = json.loads(files["data_manifest"].read_text(encoding="utf-8"))
        rows = read_jsonl(files["predictions"])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalError(
            f"{run}: cannot read its eval/data files ({e}), so it cannot be compared with "
            f"{other}. Fix: re-run `verticalize eval <yaml> --run-dir {run} --force`."
        ) from e
    task = report.get("task", "classification")
    if task not in task_names() or not get_task(task).supports("compare"):
        raise EvalError(
            f"{files['report']}: task is {task!r}; --compare handles classification runs only "
            f"(comparing {run} with {other}). Fix: compare two classification runs."
        )
    bad = next((i for i, r in enumerate(rows, 1) if not {"id", "gold", "pred"} <= r.keys()), None)
    if bad is not None or not rows:
        where = f"line {bad} lacks id/gold/pred" if bad else "it is empty"
        raise EvalError(
            f"{files['predictions']}: {where}, so {run} cannot be compared with {other}. "
            f"Fix: re-run `verticalize eval <yaml> --run-dir {run} --force`."
        )
    by_id: dict = {}
    for r in rows:
        key = json.dumps(r["id"])  # ids may be str or int; JSON text keeps 1 and "1" apart
        if key in by_id:
            raise EvalError(
                f"{files['predictions']}: id {r['id']!r} occurs twice, so {run} cannot be aligned "
                f"with {other} by id. Fix: give every record a unique id and re-run the data and "
                "eval stages."
            )
        by_id[key] = r
    return {
        "path": run,
        "name": report.get("name") or run.name,
        "labels": [str(x) for x in data_m.get("labels") or []],
        "rows": rows,
        "by_id": by_id,
    }


def _check_same_test_set(a: dict, b: dict) -> None:
    only_a = a["by_id"].keys() - b["by_id"].keys()
    only_b = b["by_id"].keys() - a["by_id"].keys()
    if only_a or only_b:
        example = json.loads(sorted(only_a or only_b)[0])
        raise EvalError(
            f"{a['path']} and {b['path']} were evaluated on different test sets: "
            f"{len(only_a)} ids only in A, {len(only_b)} only in B (e.g. {example!r}; "
            f"{len(a['rows'])} vs {len(b['rows'])} records). {SAME_SPLIT_FIX}"
        )
    diff = [k for k, r in a["by_id"].items() if r["gold"] != b["by_id"][k]["gold"]]
    if diff:
        k = diff[0]
        raise EvalError(
            f"{a['path']} and {b['path']} have the same test ids but different gold labels for "
            f"{len(diff)} of them (e.g. id {json.loads(k)!r}: {a['by_id'][k]['gold']!r} vs "
            f"{b['by_id'][k]['gold']!r}). {SAME_SPLIT_FIX}"
        )


def _metric_key(name: str, labels: list[str]) -> str:
    """Validate a metric name; per-class names become `f1:<label index>` for code_metric."""
    if name == "accuracy" or name in _AVERAGED:
        return name
    kind, _, label = name.partition(":")
    if kind in ("precision", "recall", "f1") and label in labels:
        return f"{kind}:{labels.index(label)}"
    raise EvalError(
        f"--compare metric {name!r} is not a classification metric of these runs. Fix: use "
        f"accuracy, one of {sorted(_AVERAGED)}, or f1:<label> with a label in {labels}."
    )


def _fmt_p(p: float) -> str:
    return f"{p:.3g}"


def _verdict(a: dict, b: dict, key: str, m: dict, mc: dict, alpha: float, significant: bool) -> str:
    conf = round(100 * m["confidence"])
    delta = m["delta"]
    word = "better than" if delta > 0 else ("worse than" if delta < 0 else "equal to")
    sign = "≥" if mc["p_value"] >= alpha else "<"
    text = (
        f"B ({b['path'].name}) is {word} A ({a['path'].name}) on {key} by {delta:+.3f} "
        f"({conf}% CI [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]); the difference is "
        f"{'significant' if significant else 'not significant'} "
        f"(McNemar p = {_fmt_p(mc['p_value'])} {sign} {alpha:g})."
    )
    ci_excludes_0 = m["ci_low"] > 0 or m["ci_high"] < 0
    if significant and not ci_excludes_0:
        text += f" Caution: the bootstrap CI for {key} includes 0."
    elif not significant and ci_excludes_0:
        text += (
            f" Note: the bootstrap CI for {key} excludes 0 (bootstrap p = {_fmt_p(m['p_value'])}),"
            " but McNemar, which counts items only one model gets right, does not confirm it."
        )
    return text


def compare_runs(
    run_a: Path,
    run_b: Path,
    metrics: tuple[str, ...] = ("macro_f1", "accuracy"),
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Compare run B against run A on their shared test set; the verdict is about metrics[0].

    Values come from `classification_metrics` on the full test set (labels from A's
    data/manifest.json); each delta (B - A) has a paired bootstrap CI at 1 - alpha and a
    bootstrap p; `significant` is McNemar's p < alpha on per-item correctness.
    """
    if not metrics:
        raise EvalError("--compare needs at least one metric. Fix: e.g. macro_f1.")
    run_a, run_b = Path(run_a), Path(run_b)
    a = _load_run(run_a, run_b)
    b = _load_run(run_b, run_a)
    _check_same_test_set(a, b)

    keys = [json.dumps(r["id"]) for r in a["rows"]]  # align on A's order
    gold = [str(a["by_id"][k]["gold"]) for k in keys]
    pred_a = [str(a["by_id"][k]["pred"]) for k in keys]
    pred_b = [str(b["by_id"][k]["pred"]) for k in keys]
    labels = a["labels"] + [lab for lab in b["labels"] if lab not in a["labels"]]
    if not labels:
        labels = sorted(set(gold) | set(pred_a) | set(pred_b))

    full_a = classification_metrics(gold, pred_a, labels)
    full_b = classification_metrics(gold, pred_b, labels)
    extra = sorted((set(gold) | set(pred_a) | set(pred_b)) - set(labels))
    index = {lab: i for i, lab in enumerate(labels + extra)}

    def encode(values: list[str]) -> np.ndarray:
        return np.array([index[v] for v in values], dtype=np.int64)

    g, pa, pb = encode(gold), encode(pred_a), encode(pred_b)
    confidence = 1 - alpha
    out_metrics = {}
    for name in metrics:
        boot = paired_bootstrap(
            g,
            pa,
            pb,
            code_metric(_metric_key(name, labels), len(labels), len(index)),
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
        )
        va, vb = metric_value(full_a, name), metric_value(full_b, name)
        out_metrics[name] = {"a": va, "b": vb, **boot, "delta": vb - va}

    correct_a = [p == t for p, t in zip(pred_a, gold, strict=True)]
    correct_b = [p == t for p, t in zip(pred_b, gold, strict=True)]
    mc = mcnemar(correct_a, correct_b)
    significant = bool(mc["p_value"] < alpha)
    key = metrics[0]
    return {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "name_a": a["name"],
        "name_b": b["name"],
        "n": len(gold),
        "labels": labels,
        "alpha": alpha,
        "seed": seed,
        "metrics": out_metrics,
        "mcnemar": mc,
        "significant": significant,
        "verdict": _verdict(a, b, key, out_metrics[key], mc, alpha, significant),
    }


def write_comparison(result: dict, out: Path) -> Path:
    """Write `result` to `out` (a .json path) or to `out/compare.json`, atomically."""
    out = Path(out)
    path = out if out.suffix == ".json" else out / "compare.json"
    write_json_atomic(path, result)
    return path
