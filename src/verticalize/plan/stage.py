"""Plan stage entry point (P3): parameters, FLOPs, peak memory per method and precision,
wall time from a short calibration run, and a recommendation; writes <run>/plan/plan.json."""

from __future__ import annotations

import math

from verticalize.config import Config, FreezeConfig, ModelConfig
from verticalize.console import console
from verticalize.models import memory
from verticalize.models.adapt import count_parameters
from verticalize.models.architecture import model_dims
from verticalize.plan.calibrate import calibrate, epoch_batches, padded_tokens
from verticalize.plan.flops import flops_per_token
from verticalize.plan.recommend import recommend
from verticalize.plan.workload import Workload, build_workload
from verticalize.plugins import get_task
from verticalize.runfolder import RunFolder, StageResult, write_json_atomic
from verticalize.train.loop import release_freed_memory

PRECISIONS = ("fp32", "bf16")
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def run(cfg: Config, folder: RunFolder, calibrate_steps: int = 3) -> StageResult:
    """Plan the training `cfg` describes on this machine; the result's manifest is what
    plan/plan.json holds."""
    from verticalize.data import stage as data_stage

    data_stage.run(cfg, folder)  # skipped when run/data is current
    labels = folder.read_manifest("data").get("labels") or []
    console.print(f"plan: loading {cfg.model.base} and encoding the training data")
    work = build_workload(cfg, folder, labels)
    runtime = memory.resident_bytes(work.base)  # the process before the model, data included
    available = memory.available_bytes(cfg.train)
    methods = list(dict.fromkeys([*work.methods, cfg.model.method]))
    per_method = {}
    for method in methods:
        if method == cfg.model.method:
            continue  # adapted in place last: the base model is not needed after it
        model = work.adapted(method_config(cfg, method, work))
        per_method[method] = describe(model, work, cfg, runtime, method)
        del model
        release_freed_memory()
    model = work.adapted(cfg.model, in_place=True)
    per_method[cfg.model.method] = describe(model, work, cfg, runtime, cfg.model.method)
    mine = per_method[cfg.model.method]
    precision = memory.PRECISIONS[cfg.train.mixed_precision]

    calibration, est_seconds = None, None
    if calibrate_steps > 0:
        console.print(f"plan: timing {calibrate_steps} training steps on this machine")
        first = work.passes[0]
        calibration = calibrate(model, first.recipe, cfg.train, cfg.seed, calibrate_steps)
        est_seconds = sum(pass_seconds(p, cfg, calibration.seconds_per_token) for p in work.passes)

    def fits(method: str, batch: int) -> bool:
        return per_method[method]["by_batch"][str(batch)] <= available

    rec = recommend(
        mine["params"],
        model_dims(model).layers,
        work.examples,
        cfg.model.method,
        "full" not in per_method or per_method["full"]["memory"][precision]["total"] <= available,
        fits,
    )
    result = {
        "name": cfg.name,
        "task": cfg.task,
        "base_model": cfg.model.base,
        "method": cfg.model.method,
        "precision": precision,
        "params": mine["params"],
        "trainable_params": mine["trainable_params"],
        "train_flops": mine["train_flops"],
        "peak_memory_bytes": mine["memory"][precision]["total"],
        "memory": mine["memory"][precision],
        "est_seconds": None if est_seconds is None else round(est_seconds, 1),
        "available_memory_bytes": available,
        "fits": mine["memory"][precision]["total"] <= available,
        "tokens": {
            "examples": work.examples,
            "per_epoch": sum(p.tokens for p in work.passes),
            "total": sum(p.tokens * p.epochs for p in work.passes),
            "seq_len": max(p.seq_len for p in work.passes),
            "passes": {p.label: {"tokens": p.tokens, "epochs": p.epochs} for p in work.passes},
        },
        "methods": {
            m: {k: v for k, v in per_method[m].items() if k != "by_batch"} for m in methods
        },
        "calibration": calibration.as_dict() if calibration else None,
        "recommendation": rec.as_dict(),
        "measured": measured(folder),
        "conventions": CONVENTIONS,
    }
    path = folder.stage_dir("plan") / "plan.json"
    write_json_atomic(path, result)
    return StageResult("plan", skipped=False, manifest=result, outputs={"plan_json": str(path)})


CONVENTIONS = {
    "train_flops": "2 FLOPs per multiply-add; forward 2N + attention, backward 2N above the "
    "lowest trainable parameter + 2 × trainable matmul weights; N excludes embedding lookups",
    "peak_memory_bytes": "analytic: weights + fp32 gradients + AdamW states + allocator factor × "
    "the blocks' working set + max(LM logits, an evaluation batch) + runtime (this process's "
    "RSS less the model, + the first step's non-tensor memory); see verticalize.models.memory",
    "calibration.peak_rss_bytes": "this process's peak after the calibration steps (no "
    "evaluation): when it is above peak_memory_bytes, trust the larger",
    "est_seconds": "calibrated seconds per padded token × padded tokens × epochs, plus "
    "evaluation at a third of the training cost per token",
}


def method_config(cfg: Config, method: str, work: Workload) -> ModelConfig:
    """The model section for `method`: the configured settings, or sensible ones."""
    update: dict = {"method": method}
    if method == "freeze" and cfg.model.method != "freeze":
        if not work.freeze_head:  # a causal LM has no separate head to train alone
            layers = model_dims(work.base).layers
            update["freeze"] = FreezeConfig(layers=layers // 2)
        else:
            update["freeze"] = FreezeConfig(head_only=True)
    return cfg.model.model_copy(update=update)


def describe(model, work: Workload, cfg: Config, runtime: int, method: str) -> dict:
    """Parameter counts, FLOPs and memory (per precision and per batch size) of one method."""
    total, trainable = count_parameters(model)
    extra = cfg.model.prompt.virtual_tokens if method in ("prompt_tuning", "prefix_tuning") else 0
    seq = max(p.seq_len for p in work.passes) + extra
    flops = 0.0
    for p in work.passes:
        mean_len = p.tokens / max(len(p.recipe.items), 1) + extra
        flops += flops_per_token(model, mean_len, cfg.train.gradient_checkpointing)["total"] * (
            p.tokens * p.epochs
        )
    t, lm = cfg.train, get_task(cfg.task).lm_logits
    mem = {
        prec: memory.training_memory(model, t, seq, lm, prec, runtime).as_dict()
        for prec in PRECISIONS
    }
    prec = memory.PRECISIONS[t.mixed_precision]
    by_batch = {
        str(b): memory.training_memory(
            model, t.model_copy(update={"batch_size": b}), seq, lm, prec, runtime
        ).total
        for b in BATCHES
    }
    return {
        "params": total,
        "trainable_params": trainable,
        "train_flops": flops,
        "memory": mem,
        "by_batch": by_batch,
    }


def pass_seconds(p, cfg: Config, seconds_per_token: float) -> float:
    """Training plus evaluation time of one pass at the calibrated speed."""
    t = cfg.train
    batches = epoch_batches(p.recipe, t, cfg.seed)
    train_tokens = padded_tokens(p.recipe, batches) * p.epochs
    steps_per_epoch = math.ceil(len(batches) / t.grad_accum_steps)
    evals = p.epochs * (math.ceil(steps_per_epoch / t.eval_every) if t.eval_every else 1)
    mean_len = p.tokens / max(len(p.recipe.items), 1)
    eval_tokens = evals * p.val_items * mean_len
    return seconds_per_token * (train_tokens + eval_tokens / 3)


def measured(folder: RunFolder) -> dict | None:
    """What a finished train stage of this run measured, to set beside the estimate."""
    m = folder.read_manifest("train")
    if not m or not m.get("complete"):
        return None
    return {k: m[k] for k in ("peak_rss_bytes", "train_seconds", "steps") if k in m}
