"""Eval stage entry point: score model/ and the baselines on the test split; write the report."""

from __future__ import annotations

import time

from verticalize.config import Config, Target
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.evaluate.contamination import contamination_section
from verticalize.evaluate.margin import strongest_baseline
from verticalize.evaluate.report import write_report
from verticalize.metrics import lower_is_better, metric_value
from verticalize.plugins import get_task
from verticalize.runfolder import (
    RunFolder,
    StageResult,
    fingerprint,
    read_jsonl,
)
from verticalize.version import __version__

SUMMARY = ["accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall"]


def check_targets(targets: list[Target], metrics: dict, baselines: dict | None = None) -> list:
    """Each target judged on the test metrics; a relative one (`beat`) against the named or
    strongest baseline's value, plus or minus `by` in the metric's better direction."""
    out = []
    for t in targets:
        direction = t.direction or ("min" if lower_is_better(t.metric) else "max")
        achieved = metric_value(metrics, t.metric)
        row = {"metric": t.metric, "target": t.target, "direction": direction}
        threshold = t.target
        if t.beat is not None:
            name = t.beat
            if name == "strongest_baseline":
                name = strongest_baseline(baselines or {}, t.metric)
            b = (baselines or {}).get(name) if name else None
            value = metric_value(b["metrics"], t.metric) if b else None
            threshold = None
            if value is not None:
                threshold = value + t.by if direction == "max" else value - t.by
            row |= {"beat": t.beat, "baseline": name, "baseline_value": value, "by": t.by}
            row["target"] = threshold
        if achieved is None or threshold is None:
            met = False
        elif t.beat is not None:  # beat: strictly better than the baseline (plus `by`)
            met = achieved > threshold if direction == "max" else achieved < threshold
        else:
            met = achieved >= threshold if direction == "max" else achieved <= threshold
        out.append({**row, "achieved": achieved, "met": bool(met), "target_text": _text(row)})
    return out


def _text(row: dict) -> str:
    """The target column of the report: "≥ 0.8000", or "> tfidf_lr 0.4500 + 0.02"."""
    if "beat" not in row:
        return f"{'≤' if row['direction'] == 'min' else '≥'} {row['target']:.4f}"
    if row["baseline_value"] is None:
        return f"beat {row['beat']}: no such baseline result"
    sign = "<" if row["direction"] == "min" else ">"
    by = f" {'−' if row['direction'] == 'min' else '+'} {row['by']:g}" if row["by"] else ""
    return f"{sign} {row['baseline']} {row['baseline_value']:.4f}{by}"


def verdict(
    model_m: dict, baselines: dict, key: str = "macro_f1", margin: dict | None = None
) -> str:
    """One honest sentence per baseline: better or not, by how much, on which metric. With a
    `margin` over the strongest baseline (evaluate.margin), that one comes first, saying
    whether the model beats it and whether the 95% CI of the difference excludes 0."""
    parts = []
    strongest = strongest_baseline(baselines, key) if margin else None
    if strongest is not None:
        parts.append(_margin_sentence(model_m, strongest, baselines[strongest], key, margin))
    for name, b in baselines.items():
        if name == strongest:
            continue
        delta = model_m[key] - b["metrics"][key]
        gain = -delta if lower_is_better(key) else delta
        word = "better than" if gain > 0 else ("equal to" if gain == 0 else "NOT better than")
        parts.append(
            f"The fine-tuned model ({key} {model_m[key]:.4f}) is {word} the {name} "
            f"baseline ({b['metrics'][key]:.4f}), Δ {delta:+.4f} on the test split."
        )
    return " ".join(parts) or "No baseline was configured."


def _margin_sentence(model_m: dict, name: str, b: dict, key: str, m: dict) -> str:
    lower = lower_is_better(key)
    gain = -m["delta"] if lower else m["delta"]
    low, high = (-m["ci_high"], -m["ci_low"]) if lower else (m["ci_low"], m["ci_high"])
    ci = f"95% CI [{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]"
    p = f"{'McNemar' if m.get('test') == 'mcnemar' else 'bootstrap'} p = {m['p_value']:.3g}"
    numbers = (
        f"{key} {model_m[key]:.4f} vs {b['metrics'][key]:.4f}, Δ {m['delta']:+.4f} ({ci}, {p})"
    )
    if gain <= 0:
        return f"The fine-tuned model does not beat {name}, the strongest baseline: {numbers}."
    if low > 0:
        return f"The fine-tuned model beats {name}, the strongest baseline: {numbers}."
    if high < 0:  # cannot happen with gain > 0, kept for completeness
        return f"The fine-tuned model does not beat {name}, the strongest baseline: {numbers}."
    return (
        f"The fine-tuned model is ahead of {name}, the strongest baseline, but not "
        f"significantly (the CI includes 0): {numbers}."
    )


def training_history(train_dir, stages: list[str]) -> list[dict]:
    """metrics.jsonl rows of the training run; a generation run's stages one after another
    on a single step axis, each row tagged with its stage."""
    rows: list[dict] = []
    for sub in dict.fromkeys(["", *stages]):
        path = train_dir / sub / "metrics.jsonl"
        if not path.is_file():
            continue
        offset = max((r["step"] for r in rows), default=0)
        rows += [{**r, "step": r["step"] + offset, "stage": sub or None} for r in read_jsonl(path)]
    return rows


def run(cfg: Config, folder: RunFolder, force: bool = False) -> StageResult:
    data_m = folder.require("data", "eval")
    train_m = folder.require("train", "eval")
    plugin = get_task(cfg.task)
    fp = fingerprint(
        cfg.eval.model_dump(mode="json"),
        train_m["fingerprint"],
        data_m["fingerprint"],
        cfg.name,
        cfg.domain,
        *plugin.eval_sections(cfg),
    )
    if not force and folder.is_current("eval", fp):
        return StageResult("eval", skipped=True, manifest=folder.read_manifest("eval"))
    started = time.perf_counter()
    test = read_split(cfg, folder.root, "test")
    out_dir = folder.stage_dir("eval")
    evaluate = plugin.hook("evaluate", "be evaluated")
    report, infer_s = evaluate(cfg, folder, data_m, train_m, test, out_dir)
    report.setdefault("baselines", {})
    report.setdefault("summary_metrics", plugin.summary_metrics)
    if "verdict" not in report:
        report["verdict"] = verdict(
            report["model"]["metrics"],
            report["baselines"],
            plugin.main_metric,
            report.get("margin"),
        )
    metrics = report["model"]["metrics"]
    eval_s = time.perf_counter() - started
    timing = {
        "data_s": data_m.get("seconds"),
        "train_s": train_m.get("train_seconds"),
        "eval_s": round(eval_s, 2),
        "inference_s": round(infer_s, 3),
        # the task's own steps (baselines, cv, robustness, attacks …), wall seconds each
        "eval_steps": report.pop("timing", {}),
    }
    timing["total_s"] = round(sum(v for v in (timing["data_s"], timing["train_s"], eval_s) if v), 2)
    report = {
        "task": cfg.task,
        "name": cfg.name,
        "domain": cfg.domain,
        **report,
        "targets": check_targets(cfg.eval.targets, metrics, report["baselines"]),
        "test_size": len(test),
        "train": {
            k: train_m.get(k)
            for k in (
                "base_model",
                "method",
                "parameters",
                "trainable_parameters",
                "steps",
                "epochs_run",
                "best_metric",
                "best_step",
                "stopped_early",
                "resumed_from",
                "packing",
                "stages",
                "head",
                "misaligned_spans",
                "truncated_to_max_length",
                "class_offsets",
            )
            if k in train_m
        },
        "data": {
            k: data_m.get(k)
            for k in ("in", "out", "dropped", "splits", "label_counts", "sources", "quarantined")
        },
        "timing": timing,
        "verticalize_version": __version__,
    }
    contamination = contamination_section(cfg, plugin, data_m, folder.stage_dir("data"), out_dir)
    if contamination is not None:
        report["contamination"] = contamination
    history = training_history(folder.stage_dir("train"), plugin.train_logs(cfg))
    json_path, html_path = write_report(report, history, out_dir, plugin.render_report)
    manifest = folder.write_manifest(
        "eval",
        {
            "in": len(test),
            "out": len(test),
            "dropped": {},
            "fingerprint": fp,
            "complete": True,
            "seconds": round(eval_s, 2),
        },
    )
    console.print(f"eval: {report['verdict']}")
    return StageResult(
        "eval",
        skipped=False,
        manifest=manifest,
        outputs={"report_json": str(json_path), "report_html": str(html_path)},
    )
