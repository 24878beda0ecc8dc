"""Train stage entry point: data splits in, checkpoints + logs in train/, model in model/."""

from __future__ import annotations

import json
import shutil

from accelerate.utils import set_seed

from verticalize.config import TRAIN_RUNTIME_FIELDS, Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.models.adapt import adapt, count_parameters, merged
from verticalize.models.load import load_sequence_classifier
from verticalize.runfolder import RunFolder, StageResult, fingerprint, write_json_atomic
from verticalize.tasks.classification import EncodedRecords, classification_recipe
from verticalize.train.loop import train_model
from verticalize.train.tracking import open_tracker

STATE = "run_state.json"


def train_fingerprint(cfg: Config, data_manifest: dict) -> str:
    return fingerprint(
        cfg.model.model_dump(mode="json"),
        cfg.train.model_dump(mode="json", exclude=TRAIN_RUNTIME_FIELDS),
        cfg.seed,
        data_manifest["fingerprint"],
        *task_sections(cfg),
    )


def task_sections(cfg: Config) -> list[dict]:
    """The task's own config section, when it has one (a changed head means retraining)."""
    if cfg.task == "generation":
        return [
            cfg.generation.model_dump(
                mode="json", exclude={"eval_generations", "report_samples", "max_new_tokens"}
            )
        ]
    if cfg.task == "ner":
        return [cfg.ner.model_dump(mode="json")]
    return []


def run(cfg: Config, folder: RunFolder, force: bool = False) -> StageResult:
    data_manifest = folder.require("data", "train")
    fp = train_fingerprint(cfg, data_manifest)
    if not force and folder.is_current("train", fp):
        return StageResult("train", skipped=True, manifest=folder.read_manifest("train"))
    out_dir = folder.stage_dir("train")
    state_file = out_dir / STATE
    previous = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if force or previous.get("fingerprint") != fp:  # config or data changed: start over
        shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_file, {"fingerprint": fp})

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
    if cfg.task == "generation":
        from verticalize.train.generation import train_generation

        shutil.rmtree(folder.model_dir, ignore_errors=True)
        fields = train_generation(cfg, folder, out_dir, tracker)
        manifest = folder.write_manifest(
            "train",
            {**fields, "model_dir": str(folder.model_dir), "fingerprint": fp, "complete": True},
        )
        return StageResult("train", False, manifest, {"model": str(folder.model_dir)})
    if cfg.task == "ner":
        from verticalize.train.ner import train_ner

        fields = train_ner(cfg, folder, out_dir, data_manifest["labels"], tracker)
        manifest = folder.write_manifest(
            "train",
            {**fields, "model_dir": str(folder.model_dir), "fingerprint": fp, "complete": True},
        )
        return StageResult("train", False, manifest, {"model": str(folder.model_dir)})
    labels = data_manifest["labels"]
    train_records = read_split(cfg, folder.root, "train")
    val_records = read_split(cfg, folder.root, "validation") or train_records
    model, tokenizer = load_sequence_classifier(cfg.model.base, labels)
    model = adapt(model, cfg.model)
    total, trainable = count_parameters(model)
    console.print(
        f"train: {cfg.model.base} ({cfg.model.method}), {trainable:,} of {total:,} parameters "
        f"trainable, {len(train_records)} training records"
    )
    label2id = {lab: i for i, lab in enumerate(labels)}
    train_set = EncodedRecords(train_records, tokenizer, label2id, cfg.model.max_length)
    val_set = EncodedRecords(val_records, tokenizer, label2id, cfg.model.max_length)
    recipe = classification_recipe(
        train_set,
        val_set,
        [r["label"] for r in val_records],
        labels,
        tokenizer.pad_token_id,
        cfg.train.label_smoothing,
        cfg.train.eval_batch_size,
    )
    outcome = train_model(cfg.train, cfg.seed, model, recipe, out_dir, tracker)
    if outcome.resumed_from:
        console.print(f"train: resumed from {outcome.resumed_from}")

    final = merged(model)
    shutil.rmtree(folder.model_dir, ignore_errors=True)
    final.save_pretrained(folder.model_dir)
    tokenizer.model_max_length = cfg.model.max_length  # predict / serve truncate as training did
    tokenizer.save_pretrained(folder.model_dir)
    truncated = sum(len(x["input_ids"]) >= cfg.model.max_length for x in train_set.items)
    manifest = folder.write_manifest(
        "train",
        {
            "in": len(train_records),
            "out": len(train_records),
            "dropped": {},
            "truncated_to_max_length": truncated,
            "base_model": cfg.model.base,
            "method": cfg.model.method,
            "parameters": total,
            "trainable_parameters": trainable,
            **outcome.manifest_fields(cfg.train.early_stopping.metric),
            "model_dir": str(folder.model_dir),
            "fingerprint": fp,
            "complete": True,
        },
    )
    return StageResult(
        "train", skipped=False, manifest=manifest, outputs={"model": str(folder.model_dir)}
    )
