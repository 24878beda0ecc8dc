"""Eval stage entry point: score model/ and the baselines on the test split; write the report."""

from __future__ import annotations

import time

from verticalize.config import Config, Target
from verticalize.console import console
from verticalize.data.outputs import read_split
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


def check_targets(targets: list[Target], metrics: dict) -> list[dict]:
    out = []
    for t in targets:
        direction = t.direction or ("min" if lower_is_better(t.metric) else "max")
        achieved = metric_value(metrics, t.metric)
        met = achieved is not None and (
            achieved >= t.target if direction == "max" else achieved <= t.target
        )
        out.append(
            {
                "metric": t.metric,
                "target": t.target,
                "direction": direction,
                "achieved": achieved,
                "met": bool(met),
            }
        )
    return out


def verdict(model_m: dict, baselines: dict, key: str = "macro_f1") -> str:
    """One honest sentence per baseline: better or not, by how much, on which metric."""
    parts = []
    for name, b in baselines.items():
        delta = model_m[key] - b["metrics"][key]
        gain = -delta if lower_is_better(key) else delta
        word = "better than" if gain > 0 else ("equal to" if gain == 0 else "NOT better than")
        parts.append(
            f"The fine-tuned model ({key} {model_m[key]:.4f}) is {word} the {name} "
            f"baseline ({b['metrics'][key]:.4f}), Δ {delta:+.4f} on the test split."
        )
    return " ".join(parts) or "No baseline was configured."


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
    fp = fingerprint(
        cfg.eval.model_dump(mode="json"),
        train_m["fingerprint"],
        data_m["fingerprint"],
        cfg.name,
        cfg.domain,
    )
    if not force and folder.is_current("eval", fp):
        return StageResult("eval", skipped=True, manifest=folder.read_manifest("eval"))
    started = time.perf_counter()
    test = read_split(cfg, folder.root, "test")
    out_dir = folder.stage_dir("eval")
    plugin = get_task(cfg.task)
    evaluate = plugin.hook("evaluate", "be evaluated")
    report, infer_s = evaluate(cfg, folder, data_m, train_m, test, out_dir)
    report.setdefault("baselines", {})
    report.setdefault("summary_metrics", plugin.summary_metrics)
    if "verdict" not in report:
        report["verdict"] = verdict(
            report["model"]["metrics"], report["baselines"], plugin.main_metric
        )
    metrics = report["model"]["metrics"]
    eval_s = time.perf_counter() - started
    timing = {
        "data_s": data_m.get("seconds"),
        "train_s": train_m.get("train_seconds"),
        "eval_s": round(eval_s, 2),
        "inference_s": round(infer_s, 3),
    }
    timing["total_s"] = round(sum(v for v in (timing["data_s"], timing["train_s"], eval_s) if v), 2)
    report = {
        "task": cfg.task,
        "name": cfg.name,
        "domain": cfg.domain,
        **report,
        "targets": check_targets(cfg.eval.targets, metrics),
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
