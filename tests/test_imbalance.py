"""Class imbalance (M5) and honest comparisons (E2, E7): class weights, focal loss, the balanced
sampler, logit offsets folded into a real head, relative targets, the margin verdict."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from verticalize.config import Target, TrainConfig
from verticalize.errors import TrainingError
from verticalize.evaluate.margin import label_margin, strongest_baseline
from verticalize.evaluate.stage import check_targets, verdict
from verticalize.tasks.classification.imbalance import (
    balanced_order,
    class_weight_vector,
    classification_loss,
    fold_offsets,
    tune_offsets,
)

LABELS = ["negative", "neutral", "positive"]
TRAIN = ["positive"] * 6 + ["negative"] * 3 + ["neutral"]


def test_auto_class_weights_are_sklearns_balanced():
    from sklearn.utils.class_weight import compute_class_weight

    w = class_weight_vector(TrainConfig(class_weights="auto"), TRAIN, LABELS)
    ref = compute_class_weight("balanced", classes=np.array(LABELS), y=np.array(TRAIN))
    assert w.tolist() == pytest.approx(ref.tolist())
    assert class_weight_vector(TrainConfig(), TRAIN, LABELS) is None
    given = class_weight_vector(TrainConfig(class_weights={"neutral": 4.0}), TRAIN, LABELS)
    assert given.tolist() == [1.0, 4.0, 1.0]
    with pytest.raises(TrainingError, match="'neutal' is not a label"):
        class_weight_vector(TrainConfig(class_weights={"neutal": 2.0}), TRAIN, LABELS)


def test_focal_loss_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
    y = torch.tensor([0, 2, 1])
    w = torch.tensor([1.0, 3.0, 0.5])
    t = TrainConfig(loss="focal", focal_gamma=2.0, label_smoothing=0.0)
    got = classification_loss(t, w)(logits, y)
    p = torch.softmax(logits, -1)
    terms, weights = [], []
    for i in range(3):
        pt = float(p[i, y[i]])
        terms.append(float(w[y[i]]) * (1 - pt) ** 2 * -math.log(pt))
        weights.append(float(w[y[i]]))
    assert float(got) == pytest.approx(sum(terms) / sum(weights), rel=1e-5)
    # gamma 0 and no weights: plain cross-entropy
    plain = classification_loss(TrainConfig(loss="focal", focal_gamma=0.0, label_smoothing=0), None)
    assert float(plain(logits, y)) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    # weighted cross-entropy is torch's weighted mean
    ce = classification_loss(TrainConfig(class_weights="auto", label_smoothing=0.1), w)
    ref = F.cross_entropy(logits, y, weight=w, label_smoothing=0.1)
    assert float(ce(logits, y)) == pytest.approx(float(ref))


def test_balanced_sampler_draws_classes_equally_and_is_seeded():
    labels = ["a"] * 900 + ["b"] * 90 + ["c"] * 10
    order = balanced_order(labels, seed=3)
    draws = order(0)
    assert len(draws) == len(labels)
    counts = Counter(labels[i] for i in draws)
    for lab in "abc":
        assert abs(counts[lab] / len(draws) - 1 / 3) < 0.06, counts
    assert order(0) == draws and order(1) != draws  # seeded by (seed, epoch)
    assert balanced_order(labels, seed=4)(0) != draws


def test_tuned_offsets_raise_validation_macro_f1_and_fold_into_a_real_head():
    rng = np.random.default_rng(0)
    gold = ["negative"] * 30 + ["neutral"] * 10 + ["positive"] * 60
    # a model that never predicts "neutral": its neutral logit sits 1.0 too low
    idx = np.array([LABELS.index(g) for g in gold])
    logits = rng.normal(0, 0.5, (100, 3))
    logits[np.arange(100), idx] += 1.2
    logits[:, 1] -= 1.5
    log_probs = torch.log_softmax(torch.tensor(logits), -1).numpy()
    offsets, before, after = tune_offsets(log_probs, gold, LABELS, "macro_f1")
    assert after > before + 0.1
    assert offsets[1] > 0.5  # neutral is lifted
    pred = [LABELS[i] for i in (log_probs + offsets).argmax(1)]
    assert "neutral" in pred

    from verticalize.models.load import load_sequence_classifier

    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    model.eval()
    enc = tok(["the drug helped a lot", "no effect at all"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before_logits = model(**enc).logits
        fold_offsets(model, offsets)
        after_logits = model(**enc).logits
    assert torch.allclose(after_logits - before_logits, torch.tensor(offsets).float().expand(2, 3))


def test_relative_targets_and_the_margin_verdict():
    baselines = {
        "tfidf_lr": {"metrics": {"macro_f1": 0.45}},
        "lightgbm": {"metrics": {"macro_f1": 0.40}},
    }
    assert strongest_baseline(baselines, "macro_f1") == "tfidf_lr"
    assert (
        strongest_baseline({"a": {"metrics": {"mae": 2.0}}, "b": {"metrics": {"mae": 1.0}}}, "mae")
        == "b"
    )
    judged = check_targets(
        [
            Target(metric="macro_f1", beat="strongest_baseline", by=0.02),
            Target(metric="macro_f1", beat="lightgbm", by=0.02),
            Target(metric="macro_f1", target=0.46),
        ],
        {"macro_f1": 0.46},
        baselines,
    )
    assert [t["met"] for t in judged] == [False, True, True]
    assert judged[0]["baseline"] == "tfidf_lr" and judged[0]["target"] == pytest.approx(0.47)
    assert judged[0]["target_text"] == "> tfidf_lr 0.4500 + 0.02"
    with pytest.raises(ValueError, match="either `target"):
        Target(metric="macro_f1")

    gold = ["a"] * 50 + ["b"] * 50
    model = ["a"] * 45 + ["b"] * 5 + ["b"] * 45 + ["a"] * 5  # 90% right
    weak = ["a"] * 30 + ["b"] * 20 + ["b"] * 30 + ["a"] * 20  # 60% right
    out = label_margin(
        {"lr": {"metrics": {"macro_f1": 0.6}}}, {"lr": weak}, gold, model, ["a", "b"], "macro_f1"
    )
    m = out["margin"]
    assert out["strongest_baseline"]["name"] == "lr"
    assert m["delta"] == pytest.approx(0.3, abs=1e-6) and m["ci_low"] > 0 and m["test"] == "mcnemar"
    assert m["p_value"] < 0.001
    text = verdict({"macro_f1": 0.9}, {"lr": {"metrics": {"macro_f1": 0.6}}}, "macro_f1", m)
    assert text.startswith("The fine-tuned model beats lr, the strongest baseline")
    # losing: the verdict says so
    lost = label_margin(
        {"lr": {"metrics": {"macro_f1": 0.9}}}, {"lr": model}, gold, weak, ["a", "b"], "macro_f1"
    )
    text = verdict(
        {"macro_f1": 0.6}, {"lr": {"metrics": {"macro_f1": 0.9}}}, "macro_f1", lost["margin"]
    )
    assert text.startswith("The fine-tuned model does not beat lr")
    # a tie-ish win is not called a win
    close = ["a"] * 44 + ["b"] * 6 + ["b"] * 45 + ["a"] * 5
    near = label_margin(
        {"lr": {"metrics": {"macro_f1": 0.89}}}, {"lr": close}, gold, model, ["a", "b"], "macro_f1"
    )
    text = verdict(
        {"macro_f1": 0.9}, {"lr": {"metrics": {"macro_f1": 0.89}}}, "macro_f1", near["margin"]
    )
    assert "not significantly" in text


def test_imbalance_settings_are_refused_where_the_task_ignores_them(tmp_path):
    from verticalize.config import validate_config

    raw = {
        "name": "x",
        "task": "ner",
        "data": {"sources": [{"path": "x.jsonl"}]},
        "train": {"class_weights": "auto"},
    }
    with pytest.raises(ValueError, match="imbalance is available for task: classification"):
        validate_config(raw)
    raw["task"] = "classification"
    cfg = validate_config(raw | {"train": {"loss": "focal", "sampler": "balanced"}})
    assert cfg.train.loss == "focal" and cfg.train.sampler == "balanced"


def test_cosine_restarts_schedule_restarts():
    from verticalize.train.schedules import build_scheduler

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(
        opt, TrainConfig(schedule="cosine_restarts", cycles=2, warmup_ratio=0.0), 100
    )
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.0) and lrs[49] < 0.01 and lrs[50] == pytest.approx(1.0)


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path):
    """T3: training that makes validation worse at every evaluation stops after `patience`
    evaluations and hands back the weights of the best one."""
    from verticalize.config import EarlyStopping
    from verticalize.train.loop import Recipe, train_model

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    w_true = torch.tensor([1.0, -2.0, 0.5, 3.0])
    items = [{"input_ids": [0], "x": x[i], "y": x[i] @ w_true} for i in range(64)]
    x_val = torch.randn(32, 4)
    y_val = -(x_val @ w_true)  # validation wants the opposite: every step makes it worse
    model = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    seen = []

    def loss(m, batch):
        return F.mse_loss(m(batch["x"]).squeeze(-1), batch["y"]), len(batch["y"])

    def evaluate(m) -> dict:
        with torch.no_grad():
            val = float(F.mse_loss(m(x_val).squeeze(-1), y_val))
        seen.append((val, m.weight.detach().clone()))
        return {"loss": val}

    recipe = Recipe(
        items=items,
        collate=lambda xs: {
            "x": torch.stack([i["x"] for i in xs]),
            "y": torch.stack([i["y"] for i in xs]),
        },
        loss=loss,
        weight=lambda item: 1,
        evaluate=evaluate,
    )
    t = TrainConfig(
        epochs=20,
        batch_size=8,
        lr=0.05,
        eval_every=2,
        warmup_ratio=0.0,
        early_stopping=EarlyStopping(metric="loss", patience=3),
        tensorboard=False,
        mlflow=False,
    )
    out = train_model(t, 0, model, recipe, tmp_path)
    assert out.stopped_early
    assert out.steps == 8  # evaluations at steps 2 (best), 4, 6, 8: three without gain
    assert out.steps < 20 * 8
    assert out.best_step == 2 and out.best_metric == pytest.approx(seen[0][0])
    assert torch.equal(out.model.weight.detach(), seen[0][1])  # the best weights are back
