"""The run folder: where stages read their inputs and write outputs and manifests.

runs/<name>/
  data/   train.jsonl validation.jsonl test.jsonl quarantine.jsonl dedup_clusters.jsonl manifest.json
  train/  checkpoints/ best/ metrics.jsonl metrics.csv tb/ tracking.json manifest.json
  eval/   report.json report.html predictions.jsonl manifest.json
  model/  the fine-tuned model in Hugging Face format
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from verticalize.config import Config
from verticalize.errors import StageOrderError
from verticalize.version import __version__

STAGES = ("data", "train", "eval")


@dataclass
class StageResult:
    stage: str
    skipped: bool
    manifest: dict = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None  # wall time of the stage's run(), skipped or not


class RunFolder:
    def __init__(self, cfg: Config, run_dir: str | Path | None = None):
        self.cfg = cfg
        root = run_dir or cfg.run_dir or Path("runs") / cfg.name
        self.root = Path(root).resolve()

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    def manifest_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / "manifest.json"

    def read_manifest(self, stage: str) -> dict | None:
        p = self.manifest_path(stage)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def require(self, stage: str, needed_by: str) -> dict:
        """The manifest of a finished upstream stage, or a clear error saying what to run."""
        m = self.read_manifest(stage)
        if not m or not m.get("complete"):
            raise StageOrderError(
                f"{self.stage_dir(stage)}: the '{stage}' stage has not finished, but "
                f"'{needed_by}' reads its files. Fix: run `verticalize {stage} <yaml>` first "
                "(or `verticalize run <yaml>` for the whole pipeline)."
            )
        return m

    def is_current(self, stage: str, fingerprint: str) -> bool:
        m = self.read_manifest(stage)
        return bool(m and m.get("complete") and m.get("fingerprint") == fingerprint)

    def write_manifest(self, stage: str, manifest: dict) -> dict:
        """Write `<stage>/manifest.json` atomically; checks in == out + sum(dropped)."""
        dropped = manifest.get("dropped", {})
        if manifest["in"] != manifest["out"] + sum(dropped.values()):
            raise AssertionError(f"{stage} manifest does not balance: {manifest}")
        body = {"stage": stage, **manifest, "verticalize_version": __version__}
        body.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_json_atomic(self.manifest_path(stage), body)
        return body


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def fingerprint(*parts) -> str:
    """Stable hash of JSON-able parts: a stage re-runs only when this changes."""
    h = hashlib.sha256(__version__.encode())
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
