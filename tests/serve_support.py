"""Model folders and live servers for the serve tests (real models, real uvicorn on
127.0.0.1, a free port). Folders are built once per test session."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from verticalize.config import ServeConfig

LABELS = ["negative", "positive"]
_ROOT = Path(tempfile.mkdtemp(prefix="vz-serve-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


@functools.cache
def classifier_folder() -> Path:
    """all-MiniLM-L6-v2 with a fresh (random) two-label head, saved as a model folder."""
    from verticalize.models.load import load_sequence_classifier

    folder = _ROOT / "minilm-cls"
    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@functools.cache
def ner_folder() -> Path:
    """all-MiniLM-L6-v2 with a fresh PER/LOC tagging head, saved like `verticalize train`."""
    from verticalize.config import NerConfig
    from verticalize.tasks.ner.model import new_tagger, save_tagger

    folder = _ROOT / "minilm-ner"
    cfg = NerConfig()
    model, tok, tags = new_tagger("all-MiniLM-L6-v2", ["PER", "LOC"], cfg)
    save_tagger(model, model.backbone, tok, tags, cfg, 128, folder)
    return folder


@functools.cache
def smollm_folder() -> Path:
    """The cached SmolLM2-135M-Instruct folder (converted from the bundled GGUF once)."""
    from verticalize.models.load import resolve_base

    return Path(resolve_base("SmolLM2-135M-Instruct"))


def versioned_copy(source: Path, version: str, name: str | None = None) -> Path:
    """A copy of a model folder whose verticalize.json names `version` (like an export)."""
    folder = _ROOT / (name or f"copy-{version}")
    if not folder.exists():
        shutil.copytree(source, folder)
    write_version(folder, version)
    return folder


def write_version(folder: Path, version: str) -> None:
    info = {"task": "classification", "name": "tests", "version": version, "labels": LABELS}
    info |= {"metric": "macro_f1", "metrics": {"macro_f1": 0.5, "accuracy": 0.6}}
    (folder / "verticalize.json").write_text(json.dumps(info), "utf-8")


def settings(tmp: Path, **overrides) -> ServeConfig:
    """Serve settings writing the audit log and feedback under `tmp`; no rate limit."""
    values = {
        "audit_log": str(tmp / "audit.log"),
        "feedback_dir": str(tmp / "feedback"),
        "rate_limit_per_minute": 0,
        "reload_interval_s": 0,
    }
    return ServeConfig(**(values | overrides))


@contextmanager
def live_server(target: Path | str, serve_settings: ServeConfig, tracking_uri: str | None = None):
    """A real uvicorn server for `target` in a thread; yields (base url, app)."""
    from verticalize.serve.app import create_app
    from verticalize.serve.server import BackgroundServer

    app = create_app(serve_settings, target, tracking_uri)
    with BackgroundServer(app) as server:
        yield server.url, app


@functools.cache
def tiny_classifier_folder() -> Path:
    """A real but tiny sequence classifier (MiniLM's tokenizer and config, 1 layer, width
    32, random weights): loads in a blink, for tests about versions rather than answers."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    from verticalize.models.load import load_tokenizer, resolve_base

    folder = _ROOT / "tiny-cls"
    base = BertConfig.from_pretrained(resolve_base("all-MiniLM-L6-v2")).to_dict()
    base |= {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2}
    base |= {"intermediate_size": 64, "num_labels": 2, "id2label": dict(enumerate(LABELS))}
    base |= {"label2id": {lab: i for i, lab in enumerate(LABELS)}}
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(BertConfig(**base)).save_pretrained(folder)
    load_tokenizer("all-MiniLM-L6-v2").save_pretrained(folder)
    return folder


def fabricate_run(root: Path, run: str, macro_f1: float, name: str = "serve-tests"):
    """(cfg, RunFolder) of a finished, published run whose export/model is the tiny
    classifier, scored `macro_f1` on one shared test set: what `registry.register` reads."""
    from verticalize.config import Config
    from verticalize.runfolder import RunFolder, write_json_atomic

    cfg = Config.model_validate(
        {
            "name": name,
            "run_dir": str(root / run),
            "data": {"sources": [{"path": "reviews.csv"}], "labels": LABELS},
        }
    )
    folder = RunFolder(cfg)
    train_fp = f"train-{run}".ljust(16, "0")
    metrics = {"accuracy": macro_f1 + 0.01, "macro_f1": macro_f1}
    write_json_atomic(folder.manifest_path("data"), {"complete": True, "fingerprint": "d" * 16})
    write_json_atomic(
        folder.manifest_path("train"),
        {"complete": True, "fingerprint": train_fp, "base_model": "all-MiniLM-L6-v2"},
    )
    write_json_atomic(folder.stage_dir("eval") / "report.json", {"model": {"metrics": metrics}})
    model_dir = folder.stage_dir("export") / "model"
    shutil.copytree(tiny_classifier_folder(), model_dir, dirs_exist_ok=True)
    card = {
        "task": "classification",
        "name": name,
        "labels": LABELS,
        "base_model": "all-MiniLM-L6-v2",
        "version": f"{name}-{train_fp[:8]}",
        "metric": "macro_f1",
        "metrics": metrics,
        "test_sha256": "a" * 64,
        "data_fingerprint": "d" * 16,
        "train_fingerprint": train_fp,
        "onnx": None,
        "onnx_int8": None,
        "published": True,
    }
    write_json_atomic(model_dir / "verticalize.json", card)
    write_json_atomic(
        folder.manifest_path("export"),
        {
            "complete": True,
            "published": True,
            "reason": None,
            "metric": "macro_f1",
            "metrics": {"torch": macro_f1},
            "metric_drop": 0.0,
        },
    )
    return cfg, folder
