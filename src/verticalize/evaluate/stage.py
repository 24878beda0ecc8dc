"""Eval stage entry point: score model/ and the baselines on the test split; write the report."""

from __future__ import annotations

import time

import torch

from verticalize import __version__
from verticalize.config import Config, Target
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.evaluate.baselines import BASELINES
from verticalize.evaluate.calibration import calibration
from verticalize.evaluate.metrics import classification_metrics, lower_is_better, metric_value
from verticalize.evaluate.report import write_report
from verticalize.runfolder import (
    RunFolder,
    StageResult,
    fingerprint,
    read_jsonl,
    write_jsonl,
)
from verticalize.tasks.classification import EncodedRecords, predict_proba, predict_records

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
        word = "better than" if delta > 0 else ("equal to" if delta == 0 else "NOT better than")
        parts.append(
            f"The fine-tuned model ({key} {model_m[key]:.4f}) is {word} the {name} "
            f"baseline ({b['metrics'][key]:.4f}), Δ {delta:+.4f} on the test split."
        )
    return " ".join(parts) or "No baseline was configured."


def training_history(train_dir, stages: list[str]) -> list[dict]:
    """metrics.jsonl rows of the training run; a generation run's stages one after another
    on a single step axis, each row tagged with its stage."""
    rows: list[dict] = []
    for sub in ["", *stages]:
        path = train_dir / sub / "metrics.jsonl"
        if not path.is_file():
            continue
        offset = max((r["step"] for r in rows), default=0)
        rows += [{**r, "step": r["step"] + offset, "stage": sub or None} for r in read_jsonl(path)]
    return rows


def _classify(cfg: Config, folder: RunFolder, data_m: dict, test: list[dict], out_dir):
    """Classification: the model and the baselines on the test split; predictions.jsonl."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = data_m["labels"]
    fit_on = read_split(cfg, folder.root, "train") + read_split(cfg, folder.root, "validation")
    model = AutoModelForSequenceClassification.from_pretrained(folder.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder.model_dir)
    test_set = EncodedRecords(
        test, tokenizer, {lab: i for i, lab in enumerate(labels)}, cfg.model.max_length
    )
    tick = time.perf_counter()
    with torch.inference_mode():
        probs = predict_proba(model, test_set, tokenizer.pad_token_id, cfg.eval.batch_size)
    infer_s = time.perf_counter() - tick
    preds = [labels[i] for i in probs.argmax(axis=1)]
    gold = [r["label"] for r in test]
    metrics = classification_metrics(gold, preds, labels)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)
    metrics["calibration"] = calibration(gold, preds, [float(c) for c in probs.max(axis=1)])
    metrics["ece"] = metrics["calibration"]["ece"]

    baselines, b_preds = {}, {}
    for name in cfg.eval.baselines:
        console.print(f"eval: fitting the {name} baseline on the same splits")
        b = BASELINES[name](fit_on, test, labels, cfg.eval.tfidf_analyzer)
        b_preds[name] = b.pop("predictions")
        baselines[name] = b
    write_jsonl(
        out_dir / "predictions.jsonl",
        (
            {
                "id": r["id"],
                "gold": r["label"],
                "pred": p,
                "confidence": float(probs[i].max()),
                **{name: p[i] for name, p in b_preds.items()},
            }
            for i, (r, p) in enumerate(zip(test, preds, strict=True))
        ),
    )
    report = {
        "model": {"path": str(folder.model_dir), "metrics": metrics},
        "baselines": baselines,
        "verdict": verdict(metrics, baselines),
        "summary_metrics": SUMMARY,
    }
    from verticalize.evaluate.error_analysis import eval_error_analysis

    report["error_analysis"] = eval_error_analysis(
        test, preds, probs, labels, out_dir, sensitive="test" in cfg.data.sensitive
    )
    report |= stress_tests(cfg, model, tokenizer, test, labels, metrics)
    if cfg.eval.cv.enabled:
        from verticalize.evaluate.cv import cross_validate

        report["cv"] = cross_validate(cfg, folder, labels)
    return report, infer_s


def stress_tests(cfg: Config, model, tokenizer, test, labels, clean: dict) -> dict:
    """E4: the test split under character noise of each kind, and adversarial attacks."""
    out: dict = {}
    rob, adv = cfg.eval.robustness, cfg.eval.adversarial
    n = cfg.model.max_length
    if rob.enabled:
        from verticalize.evaluate.noise import applicable_kinds
        from verticalize.evaluate.robustness import robustness_table

        def score(records: list[dict]) -> dict:
            _, preds = predict_records(model, tokenizer, records, labels, n, cfg.eval.batch_size)
            return classification_metrics([r["label"] for r in records], preds, labels)

        kinds = rob.kinds or applicable_kinds([r["text"] for r in test])
        console.print(f"eval: robustness under {rob.rate:.0%} noise: {', '.join(kinds)}")
        out["robustness"] = robustness_table(
            score, test, kinds, rob.rate, cfg.seed, ["macro_f1", "accuracy"], clean=clean
        )
    attacks: dict = {}
    if adv.fgsm.enabled:
        from verticalize.evaluate.adversarial import fgsm

        console.print(f"eval: FGSM on the input embeddings, ε = {adv.fgsm.epsilon}")
        attacks["fgsm"] = fgsm(
            model, tokenizer, test, labels, adv.fgsm.epsilon, n, cfg.eval.batch_size
        )
    if adv.substitution.enabled:
        from verticalize.evaluate.adversarial import substitution_attack

        s = adv.substitution
        console.print(f"eval: greedy word substitution on up to {s.n} texts")
        attacks["substitution"] = substitution_attack(
            model, tokenizer, test, labels, n, s.max_words, s.candidates, s.n
        )
    if attacks:
        out["adversarial"] = attacks
    return out


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
    if cfg.task == "generation":
        from verticalize.evaluate.generation import SUMMARY as GEN_SUMMARY
        from verticalize.evaluate.generation import evaluate_generation

        report = evaluate_generation(cfg, folder.model_dir, train_m["base_model"], test)
        report |= {"baselines": {}, "summary_metrics": GEN_SUMMARY}
        infer_s = report["model"]["metrics"].get("latency_ms_per_example", 0) / 1000
    elif cfg.task == "ner":
        from verticalize.evaluate.ner import evaluate_ner

        fit_on = read_split(cfg, folder.root, "train") + read_split(cfg, folder.root, "validation")
        report, infer_s = evaluate_ner(cfg, folder.model_dir, test, fit_on, out_dir)
        report["verdict"] = verdict(
            report["model"]["metrics"], report["baselines"], "entity_f1_micro"
        )
    else:
        report, infer_s = _classify(cfg, folder, data_m, test, out_dir)
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
    history = training_history(folder.stage_dir("train"), cfg.generation.stages)
    json_path, html_path = write_report(report, history, out_dir)
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
