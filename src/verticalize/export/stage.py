"""Export stage entry point (X1, X2): model/ → export/model/ (Hugging Face files, model card,
verticalize.json; for classification ONNX fp32 + INT8 measured against the original on the
test split) and export/manifest.json. A quantized model that loses more than
export.max_metric_drop is not published: the manifest says why and ExportError is raised."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

from verticalize.config import Config
from verticalize.errors import ExportError
from verticalize.plugins import get_task
from verticalize.runfolder import (
    RunFolder,
    StageResult,
    file_sha256,
    fingerprint,
    write_json_atomic,
)

INFO_FILE = "verticalize.json"
CARD_FILE = "README.md"
NO_ONNX_TASKS = "ONNX export covers classification models"
LINK_BYTES = 8 << 20  # weight files this big are hard-linked, not copied


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link big files (a ~500 MB generation model costs nothing); copy the rest, so
    export can rewrite small files (tokenizer_config.json) without touching model/."""
    if os.path.getsize(src) >= LINK_BYTES:
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another file system, or links not allowed
            pass
    return shutil.copy2(src, dst)


def copy_model(src: Path, dst: Path) -> None:
    """export/model/ := a fresh copy of the run's model/ folder."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=_link_or_copy)


def is_merged(model_dir: Path) -> bool:
    """True when the folder is a plain transformers model (LoRA merged at train time), False
    when it holds a PEFT adapter or LoRA weights."""
    if (model_dir / "adapter_config.json").is_file():
        return False
    from safetensors import safe_open

    for f in model_dir.glob("*.safetensors"):
        with safe_open(str(f), framework="numpy") as fh:
            if any("lora_" in k for k in fh.keys()):
                return False
    return True


def set_max_length(model_dir: Path, max_length: int) -> None:
    """Record the training max_length as the tokenizer's model_max_length, so whoever loads
    the exported folder (predict, serve, OnnxClassifier) truncates texts as training did."""
    path = model_dir / "tokenizer_config.json"
    if not path.is_file():
        return
    conf = json.loads(path.read_text("utf-8"))
    conf["model_max_length"] = max_length
    path.write_text(json.dumps(conf, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def split_file(folder: RunFolder, name: str) -> Path:
    plain = folder.stage_dir("data") / f"{name}.jsonl"
    return plain if plain.is_file() else plain.with_name(plain.name + ".enc")


def current_report(folder: RunFolder, train_m: dict) -> tuple[dict | None, dict | None]:
    """(eval/report.json, eval manifest) when eval finished after the last training, so the
    report scores this model; else (None, None)."""
    eval_m = folder.read_manifest("eval")
    path = folder.stage_dir("eval") / "report.json"
    if not eval_m or not eval_m.get("complete") or not path.is_file():
        return None, None
    stamp = "%Y-%m-%dT%H:%M:%S%z"
    try:
        fresh = datetime.strptime(eval_m["created"], stamp) >= datetime.strptime(
            train_m["created"], stamp
        )
    except (KeyError, ValueError):
        fresh = False
    return (json.loads(path.read_text("utf-8")), eval_m) if fresh else (None, None)


def _record_text(r: dict) -> str:
    if isinstance(r.get("text"), str):
        return r["text"]
    if isinstance(r.get("messages"), list):
        return " ".join(str(m.get("content", "")) for m in r["messages"] if isinstance(m, dict))
    return " ".join(v for v in r.values() if isinstance(v, str))


def refused_error(cfg: Config, manifest: dict) -> ExportError:
    where = f"{cfg.source_file}: export.max_metric_drop" if cfg.source_file else "export"
    return ExportError(
        f"{where}: {manifest['reason']}. Nothing was published ({manifest['path']} has "
        "published: false). Fix: raise export.max_metric_drop if this loss is acceptable, set "
        "export.quantize: false to ship ONNX fp32 only, or serve the original with "
        "serve.runtime: torch."
    )


def numeric(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def run(cfg: Config, folder: RunFolder, force: bool = False) -> StageResult:
    data_m = folder.require("data", "export")
    train_m = folder.require("train", "export")
    report, eval_m = current_report(folder, train_m)
    test_file = split_file(folder, "test")
    test_sha = file_sha256(test_file) if test_file.is_file() else None
    fp = fingerprint(
        cfg.export.model_dump(mode="json"),
        train_m["fingerprint"],
        data_m["fingerprint"],
        eval_m and eval_m.get("fingerprint"),
        test_sha,
        cfg.eval.batch_size,  # INT8 activations are quantized per batch
        cfg.name,
        cfg.domain,
    )
    if not force and folder.is_current("export", fp):
        previous = folder.read_manifest("export")
        if previous.get("published") is False:
            raise refused_error(cfg, previous)
        return StageResult("export", skipped=True, manifest=previous)
    if not folder.model_dir.is_dir():
        raise ExportError(
            f"{folder.model_dir}: no trained model. Fix: run `verticalize train` first."
        )
    started = time.perf_counter()
    out_dir = folder.stage_dir("export")
    folder.manifest_path("export").unlink(missing_ok=True)  # half-written is not complete
    model_out = out_dir / "model"
    copy_model(folder.model_dir, model_out)
    merged = is_merged(model_out)
    from verticalize.data.outputs import read_split

    test = read_split(cfg, folder.root, "test") if test_sha else []
    plugin = get_task(cfg.task)
    metric = cfg.export.metric or plugin.main_metric
    model_metrics = numeric(report["model"]["metrics"]) if report else {}
    fields: dict = {
        "published": True,
        "reason": None,
        "metric": metric,
        "metrics": {"torch": model_metrics.get(metric), "onnx": None, "onnx_int8": None},
        "metric_drop": None,
        "max_metric_drop": cfg.export.max_metric_drop,
        "size_bytes": {},
        "latency_ms": {},
        "latency_ratio": None,
        "size_ratio": None,
        "onnx": None,
        "onnx_int8": None,
        "onnx_reason": None,
        "merged": merged,
    }
    if plugin.export_formats is None:
        fields["onnx_reason"] = NO_ONNX_TASKS
    else:
        set_max_length(model_out, cfg.model.max_length)
        if not cfg.export.onnx:
            fields["onnx_reason"] = "export.onnx is false"
        elif not merged:
            fields["onnx_reason"] = "the model folder holds an unmerged PEFT adapter"
        elif not test:
            fields["onnx_reason"] = f"{test_file}: the test split is empty or missing"
        else:
            fields |= plugin.export_formats(cfg, folder, model_out, test)
            torch_metrics = numeric(fields.pop("torch_test_metrics"))
            model_metrics = model_metrics or torch_metrics
    info = {
        "task": cfg.task,
        "name": cfg.name,
        "domain": cfg.domain,
        "labels": plugin.export_labels(cfg, model_out, data_m),
        "base_model": train_m.get("base_model") or cfg.model.base,
        "version": f"{cfg.name}-{train_m['fingerprint'][:8]}",
        "metric": metric,
        "metrics": model_metrics,
        "test_sha256": test_sha,
        "data_fingerprint": data_m["fingerprint"],
        "train_fingerprint": train_m["fingerprint"],
        "onnx": fields["onnx"],
        "onnx_int8": fields["onnx_int8"],
        "published": fields["published"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(model_out / INFO_FILE, info)
    _write_card(cfg, model_out, info, data_m, train_m, report, fields, test, merged)
    manifest = folder.write_manifest(
        "export",
        {
            "in": 1,
            "out": int(fields["published"]),
            "dropped": {} if fields["published"] else {"metric_drop": 1},
            **fields,
            "version": info["version"],
            "model_dir": str(model_out),
            "path": str(model_out / INFO_FILE),
            "eval_report": bool(report),
            "fingerprint": fp,
            "complete": True,
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
    if not manifest["published"]:
        raise refused_error(cfg, manifest)
    return StageResult(
        "export",
        skipped=False,
        manifest=manifest,
        outputs={"model": str(model_out), "card": str(model_out / CARD_FILE)},
    )


def _write_card(cfg, model_out, info, data_m, train_m, report, fields, test, merged) -> None:
    from verticalize.export.card import guess_language, model_card

    tok_conf = model_out / "tokenizer_config.json"
    uncased = bool(
        tok_conf.is_file() and json.loads(tok_conf.read_text("utf-8")).get("do_lower_case")
    )
    language = guess_language([_record_text(r) for r in test])
    card = model_card(cfg, info, data_m, train_m, report, fields, language, uncased, merged)
    (model_out / CARD_FILE).write_text(card, encoding="utf-8")
