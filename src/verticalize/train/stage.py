"""Train stage entry point: data splits in, checkpoints + logs in train/, model in model/."""

from __future__ import annotations

import json
import shutil

from accelerate.utils import set_seed

from verticalize.config import TRAIN_RUNTIME_FIELDS, Config
from verticalize.models.memory import peak_rss_bytes
from verticalize.plugins import get_task
from verticalize.runfolder import RunFolder, StageResult, fingerprint, write_json_atomic
from verticalize.train.distributed import (
    check_strategy,
    is_main_process,
    local_world_size,
    process_state,
    world_size,
)
from verticalize.train.tracking import open_tracker

STATE = "run_state.json"


def train_fingerprint(cfg: Config, data_manifest: dict) -> str:
    return fingerprint(
        cfg.model.model_dump(mode="json"),
        cfg.train.model_dump(mode="json", exclude=TRAIN_RUNTIME_FIELDS),
        cfg.seed,
        data_manifest["fingerprint"],
        *get_task(cfg.task).fingerprint_sections(cfg),
    )


def run(cfg: Config, folder: RunFolder, force: bool = False) -> StageResult:
    data_manifest = folder.require("data", "train")
    fp = train_fingerprint(cfg, data_manifest)
    if not force and folder.is_current("train", fp):
        return StageResult("train", skipped=True, manifest=folder.read_manifest("train"))
    out_dir = folder.stage_dir("train")
    check_strategy(cfg.train)
    state = process_state(cfg.train)  # joins the process group when launched with N > 1
    if state.is_main_process:
        state_file = out_dir / STATE
        previous = json.loads(state_file.read_text()) if state_file.is_file() else {}
        if force or previous.get("fingerprint") != fp:  # config or data changed: start over
            shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(state_file, {"fingerprint": fp})
    state.wait_for_everyone()  # before any rank looks for checkpoints

    set_seed(cfg.seed)  # before the head is initialised
    tracker = open_tracker(cfg, folder)  # None when train.mlflow is off or not rank 0
    try:
        result = _train(cfg, folder, out_dir, data_manifest, fp, tracker)
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise
    if tracker is not None:
        tracker.close("FINISHED")
    return result


def _train(cfg, folder, out_dir, data_manifest, fp, tracker) -> StageResult:
    check = memory_check(cfg)
    task_cfg, pretrained = cfg, None
    if cfg.train.continued_pretraining is not None:  # an encoder task's masked-LM step first
        from verticalize.train.continued_pretraining import pretrain_encoder

        task_cfg, pretrained = pretrain_encoder(cfg, folder, out_dir, tracker, check)
        set_seed(cfg.seed)  # the task's head starts as it would without the step
    fields = get_task(cfg.task).hook("train", "be trained")(
        task_cfg, folder, out_dir, data_manifest.get("labels") or [], tracker, check
    )
    if pretrained is not None:  # lineage names the base; the step says what it added
        fields = {**fields, "base_model": cfg.model.base, "continued_pretraining": pretrained}
    if not is_main_process():  # rank 0 writes the model and the manifest
        return StageResult("train", skipped=False, manifest={})
    manifest = folder.write_manifest(
        "train",
        {
            **fields,
            "peak_rss_bytes": peak_rss_bytes(),
            "model_dir": str(folder.model_dir),
            "fingerprint": fp,
            "complete": True,
        },
    )
    return StageResult("train", False, manifest, {"model": str(folder.model_dir)})


def memory_check(cfg: Config):
    """The T9 guard the loop runs before training: the plan's estimate for this model and
    these sequences (× the processes sharing this machine) against the memory available."""
    if cfg.train.memory_guard == "off":
        return None

    def check(model, items) -> None:
        from dataclasses import fields, replace

        from verticalize.models.memory import guard_memory, training_memory

        seq_len = max((len(x["input_ids"]) for x in items), default=1)
        estimate = training_memory(model, cfg.train, seq_len, get_task(cfg.task).lm_logits)
        if cfg.train.distributed.strategy == "fsdp" and (w := world_size()) > 1:
            # gradients and AdamW states are sharded; each process still loads the whole
            # model before sharding it, so its weights count in full
            estimate = replace(
                estimate, gradients=estimate.gradients // w, optimizer=estimate.optimizer // w
            )
        if (n := local_world_size()) > 1:
            estimate = replace(
                estimate, **{f.name: getattr(estimate, f.name) * n for f in fields(estimate)}
            )
        guard_memory(estimate, cfg.train)

    return check
