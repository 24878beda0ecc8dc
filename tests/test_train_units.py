"""Schedules, checkpoint atomicity, metric logs and report verdicts — fast unit tests."""

import json

import pytest
import torch

from verticalize.config import Target, TrainConfig
from verticalize.evaluate.stage import check_targets, verdict
from verticalize.metrics import classification_metrics, metric_value
from verticalize.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from verticalize.train.schedules import build_scheduler
from verticalize.train.sharding import Replicated
from verticalize.train.trackers import MetricsLog


def lrs(cfg: TrainConfig, total: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, total)
    out = []
    for _ in range(total):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_decays_to_zero():
    got = lrs(TrainConfig(lr=1.0, schedule="cosine", warmup_ratio=0.2), 50)
    assert got[0] == 0.0 and got[5] < got[9] <= 1.0  # cold start: small LR first
    assert max(got) == pytest.approx(1.0, abs=0.02) and got[-1] < 0.01
    assert all(a >= b for a, b in zip(got[10:], got[11:], strict=False))


def test_step_decay_multiplies_by_gamma_every_step_size():
    got = lrs(TrainConfig(lr=1.0, schedule="step", warmup_ratio=0.0, step_size=10, gamma=0.1), 30)
    assert got[0] == got[9] == pytest.approx(1.0)
    assert got[10] == pytest.approx(0.1) and got[25] == pytest.approx(0.01)


def test_constant_and_linear():
    assert set(lrs(TrainConfig(lr=0.5, schedule="constant", warmup_ratio=0.0), 10)) == {0.5}
    lin = lrs(TrainConfig(lr=1.0, schedule="linear", warmup_ratio=0.0), 10)
    assert lin[0] == 1.0 and lin[5] == pytest.approx(0.5)


def test_checkpoint_roundtrip_restores_weights_optimizer_rng_and_prunes(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = build_scheduler(opt, TrainConfig(), 10)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, opt, sched, {"step": step}, 2, Replicated())
    (tmp_path / ".tmp-step-0000009").mkdir()  # a write killed half-way is never resumed
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000002", "step-0000003"]
    expected_w = model.weight.detach().clone()
    expected_draw = torch.rand(3)
    with torch.no_grad():
        model.weight.zero_()
    state = load_checkpoint(list_checkpoints(tmp_path)[-1], model, opt, sched, Replicated())
    assert state == {"step": 3}
    torch.testing.assert_close(model.weight, expected_w)
    torch.testing.assert_close(torch.rand(3), expected_draw)  # RNG restored to the save point
    assert sched.last_epoch == 1 and opt.state_dict()["state"][0]["step"] == 1


def test_metrics_log_truncates_rows_past_the_resumed_checkpoint(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False, resume_step=None)
    for s in range(1, 6):
        log.log({"event": "train", "step": s, "loss": 1.0 / s})
    log.close()
    resumed = MetricsLog(tmp_path, tensorboard=False, resume_step=3)
    resumed.log({"event": "train", "step": 4, "loss": 0.2, "lr": 0.1})
    resumed.close()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "event,step,loss,lr"


def test_metrics_match_hand_counts_and_targets_are_judged():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert m["accuracy"] == 0.75
    assert m["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert m["confusion_matrix"]["matrix"] == [[1, 1], [0, 2]]
    assert metric_value(m, "f1:b") == pytest.approx(0.8)
    m["latency_ms_per_example"] = 12.0
    judged = check_targets(
        [
            Target(metric="macro_f1", target=0.8),
            Target(metric="latency_ms_per_example", target=10.0),
        ],
        m,
    )
    assert [t["met"] for t in judged] == [False, False]
    assert judged[1]["direction"] == "min"


def test_verdict_is_honest_when_the_model_loses():
    model = {"macro_f1": 0.40}
    text = verdict(model, {"tfidf_lr": {"metrics": {"macro_f1": 0.45}}})
    assert "NOT better than the tfidf_lr baseline" in text and "-0.0500" in text
    assert "is better than" in verdict(
        {"macro_f1": 0.5}, {"tfidf_lr": {"metrics": {"macro_f1": 0.45}}}
    )
