"""Cross-validation (E3): the training recipe re-run on each of the data stage's k folds.

The folds cover train + validation (the test split stays untouched) and were assigned by
dedup group, so near-copies never straddle a fold boundary. Fold k is held out; the other
folds are cut 90/10 into training and a validation slice that picks the best epoch, as the
main run does. Folds run one after another, each with its own progress bar.

Cheaper settings (eval.cv) keep the recipe but spend less: fewer epochs, fewer tokens, a
fold that stops once its validation slice stops improving (`patience`), and only the first
n of the k folds (`folds`: each still trains on the other k - 1 folds, so the training
size is the k-fold one; only the number of estimates shrinks).
"""

from __future__ import annotations

import random
import shutil
import time

import numpy as np
from accelerate.utils import set_seed

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.errors import ConfigError
from verticalize.metrics import classification_metrics
from verticalize.models.adapt import adapt
from verticalize.models.load import load_sequence_classifier
from verticalize.runfolder import RunFolder
from verticalize.tasks.classification.encode import EncodedRecords, predict_records
from verticalize.tasks.classification.imbalance import tune_head
from verticalize.tasks.classification.recipe import classification_recipe
from verticalize.train.loop import train_model

SCALARS = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "macro_precision", "macro_recall")


def cross_validate(cfg: Config, folder: RunFolder, labels: list[str]) -> dict:
    """{"k", "folds_run", "epochs", "patience", "folds": [per-fold steps, stop, seconds],
    "<metric>": {"mean", "std", "values"}, "per_class_f1": {…}, "seconds"}."""
    k, run_folds = cv_folds(cfg)
    cv = cfg.eval.cv
    records = read_split(cfg, folder.root, "train") + read_split(cfg, folder.root, "validation")
    epochs = cv.epochs or cfg.train.epochs
    stopping = cfg.train.early_stopping
    if cv.patience:
        stopping = stopping.model_copy(update={"patience": cv.patience})
    t = cfg.train.model_copy(
        update={
            "epochs": epochs,
            "tensorboard": False,
            "mlflow": False,
            "lr": cv.lr or cfg.train.lr,
            "early_stopping": stopping,
        }
    )
    n = cv.max_length or cfg.model.max_length
    label2id = {lab: i for i, lab in enumerate(labels)}
    work = folder.stage_dir("eval") / "cv"
    started, folds, runs = time.perf_counter(), [], []
    for fold in range(run_folds):
        held = [r for r in records if r.get("fold") == fold]
        rest = [r for r in records if r.get("fold") != fold]
        random.Random(f"{cfg.seed}:cv:{fold}").shuffle(rest)
        n_val = max(len(rest) // 10, 1)
        val, train = rest[:n_val], rest[n_val:]
        set_seed(cfg.seed + fold)
        model, tok = load_sequence_classifier(cfg.model.base, labels)
        model = adapt(model, cfg.model)
        train_set = EncodedRecords(train, tok, label2id, n)
        val_set = EncodedRecords(val, tok, label2id, n)
        recipe = classification_recipe(
            train_set,
            val_set,
            [r["label"] for r in val],
            labels,
            tok.pad_token_id,
            t,
            cfg.seed + fold,
        )
        recipe.label = f"cv fold {fold + 1}/{run_folds}"
        tick = time.perf_counter()
        outcome = train_model(t, cfg.seed + fold, model, recipe, work / f"fold-{fold}")
        model = outcome.model
        if t.tune_thresholds:
            tune_head(t, n, model, tok, val, labels)
        _, preds = predict_records(model, tok, held, labels, n, t.eval_batch_size)
        m = classification_metrics([r["label"] for r in held], preds, labels)
        folds.append(m)
        shutil.rmtree(work / f"fold-{fold}", ignore_errors=True)  # checkpoints: GBs on disk
        seconds = time.perf_counter() - tick
        runs.append(
            {
                "fold": fold,
                "train": len(train),
                "held_out": len(held),
                "epochs_run": outcome.epochs_run,
                "steps": outcome.steps,
                "stopped_early": outcome.stopped_early,
                "seconds": round(seconds, 1),
            }
        )
        stop = f", stopped early after {outcome.steps} steps" if outcome.stopped_early else ""
        console.print(
            f"eval: cv fold {fold + 1}/{run_folds}: {len(train)} train, {len(held)} held out, "
            f"macro_f1 {m['macro_f1']:.4f}, accuracy {m['accuracy']:.4f} ({seconds:.0f} s{stop})"
        )
    out: dict = {
        "k": k,
        "folds_run": run_folds,
        "epochs": epochs,
        "patience": t.early_stopping.patience,
        "max_length": n,
        "lr": t.lr,
        "n": len(records),
        "folds": runs,
    }
    for name in SCALARS:
        out[name] = _mean_std([f[name] for f in folds])
    out["per_class_f1"] = {
        lab: _mean_std([f["per_class"][lab]["f1"] for f in folds]) for lab in labels
    }
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def cv_folds(cfg: Config) -> tuple[int, int]:
    """(the data's folds k, how many of them eval.cv runs); a clear error when they do not
    fit, checked before the eval stage spends any time."""
    k = cfg.data.split.folds
    if not k:
        raise ConfigError(
            f"{cfg.source_file}: eval.cv.enabled needs folds. Fix: set data.split.folds (e.g. 5)."
        )
    run_folds = cfg.eval.cv.folds or k
    if run_folds > k:
        raise ConfigError(
            f"{cfg.source_file}: eval.cv.folds is {run_folds}, but the data has {k} folds "
            f"(data.split.folds). Fix: set eval.cv.folds to at most {k}, or remove it."
        )
    return k, run_folds


def _mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof=1) over the folds."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "values": [round(float(v), 4) for v in arr]}
