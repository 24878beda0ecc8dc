"""Classification evaluation (E1–E5, E7): the model and the baselines on the test split,
calibration, error analysis, robustness and attacks, cross-validation; predictions.jsonl."""

from __future__ import annotations

import time

import torch

from verticalize.config import Config
from verticalize.console import StepTimes, console
from verticalize.data.outputs import read_split
from verticalize.evaluate.baselines import BASELINES
from verticalize.evaluate.calibration import calibration
from verticalize.evaluate.error_analysis import eval_error_analysis
from verticalize.evaluate.margin import label_margin
from verticalize.metrics import classification_metrics
from verticalize.runfolder import RunFolder, write_jsonl
from verticalize.tasks.classification.encode import EncodedRecords, predict_proba, predict_records

SUMMARY = ["accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall"]


def evaluate_classification(
    cfg: Config, folder: RunFolder, data_m: dict, train_m: dict, test: list[dict], out_dir
):
    """(report fields, inference seconds)."""
    return _classify(cfg, folder, data_m, test, out_dir)


def _classify(cfg: Config, folder: RunFolder, data_m: dict, test: list[dict], out_dir):
    """Classification: the model and the baselines on the test split; predictions.jsonl."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = data_m["labels"]
    if cfg.eval.cv.enabled:
        from verticalize.tasks.classification.cv import cv_folds

        cv_folds(cfg)  # a bad eval.cv.folds fails now, not after the other steps
    times = StepTimes("eval")
    train = read_split(cfg, folder.root, "train")
    validation = read_split(cfg, folder.root, "validation")
    with times.step("load_model"):
        model = AutoModelForSequenceClassification.from_pretrained(folder.model_dir)
        tokenizer = AutoTokenizer.from_pretrained(folder.model_dir)
    test_set = EncodedRecords(
        test, tokenizer, {lab: i for i, lab in enumerate(labels)}, cfg.model.max_length
    )
    tick = time.perf_counter()
    with times.step("predict_test"), torch.inference_mode():
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
        with times.step(f"baseline_{name}"):
            b = BASELINES[name](
                train, validation, test, labels, cfg.eval.tfidf_analyzer, "macro_f1", cfg.seed
            )
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
        **label_margin(baselines, b_preds, gold, preds, labels, "macro_f1", cfg.seed),
        "summary_metrics": SUMMARY,
    }
    with times.step("error_analysis"):
        report["error_analysis"] = eval_error_analysis(
            test, preds, probs, labels, out_dir, sensitive="test" in cfg.data.sensitive
        )
    report |= stress_tests(cfg, model, tokenizer, test, labels, metrics, times)
    if cfg.eval.cv.enabled:
        from verticalize.tasks.classification.cv import cross_validate

        with times.step("cv"):
            report["cv"] = cross_validate(cfg, folder, labels)
    report["timing"] = times.seconds
    return report, infer_s


def stress_tests(
    cfg: Config, model, tokenizer, test, labels, clean: dict, times: StepTimes | None = None
) -> dict:
    """E4: the test split under character noise of each kind, and adversarial attacks."""
    times = times or StepTimes("eval")
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
        with times.step("robustness"):
            out["robustness"] = robustness_table(
                score, test, kinds, rob.rate, cfg.seed, ["macro_f1", "accuracy"], clean=clean
            )
    attacks: dict = {}
    if adv.fgsm.enabled:
        from verticalize.tasks.classification.adversarial import fgsm

        console.print(f"eval: FGSM on the input embeddings, ε = {adv.fgsm.epsilon}")
        with times.step("attack_fgsm"):
            attacks["fgsm"] = fgsm(
                model, tokenizer, test, labels, adv.fgsm.epsilon, n, cfg.eval.batch_size
            )
    if adv.substitution.enabled:
        from verticalize.tasks.classification.adversarial import substitution_attack

        s = adv.substitution
        console.print(f"eval: greedy word substitution on up to {s.n} texts")
        with times.step("attack_substitution"):
            attacks["substitution"] = substitution_attack(
                model, tokenizer, test, labels, n, s.max_words, s.candidates, s.n, rank=s.rank
            )
    if attacks:
        out["adversarial"] = attacks
    return out
