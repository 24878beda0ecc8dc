"""The study's state: the metric that scores a trial, one trial run through the data and
train stages' run(), and the files written after each trial (trials.jsonl, results.csv,
summary.json, best.yaml)."""

from __future__ import annotations

import copy
import csv
import gc
import io
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from verticalize.config import format_validation_error, validate_config
from verticalize.console import console
from verticalize.data import stage as data_stage
from verticalize.errors import ConfigError, TrainingError, VerticalizeError
from verticalize.metrics import lower_is_better
from verticalize.plugins import get_task
from verticalize.runfolder import RunFolder, write_json_atomic
from verticalize.train import stage as train_stage
from verticalize.tune.edits import _absolute_paths, _assign, edited_yaml
from verticalize.tune.space import Source, check_space


class _TrialFailed(Exception):
    """Raised inside the objective so Optuna marks the trial failed and goes on."""


def tune_metric(src: Source) -> tuple[str, str, bool]:
    """(metric, direction, whether it replaces train.early_stopping.metric in the trials)."""
    cfg = src.cfg
    t = cfg.tune
    stop = cfg.train.early_stopping.metric
    metric = t.metric or stop
    loc = ("tune", "metric")
    plugin = get_task(cfg.task)
    if "latency" in metric and not plugin.lm_logits:
        raise ConfigError(
            f"{src.where(loc)}: tune.metric: {metric!r} is measured by eval on the test "
            f"split; tune scores trials on the validation split. Fix: use e.g. "
            f"{plugin.main_metric} or loss."
        )
    metric, problem = plugin.tune_metric(metric, cfg)
    if problem:
        raise ConfigError(f"{src.where(loc)}: tune.metric: {problem}")
    natural = "minimize" if lower_is_better(metric) else "maximize"
    direction = t.direction or natural
    if direction != natural:
        console.print(
            f"[yellow]warning:[/yellow] tune.direction: {direction} while {metric} is better "
            f"when it is {'lower' if natural == 'minimize' else 'higher'}; training still "
            "keeps each trial's best checkpoint by that rule"
        )
    return metric, direction, metric != stop


# ---------------------------------------------------------------- trials


class _Study:
    """One tune call: the base run, the trial runs and the files they write."""

    def __init__(self, src: Source, run_dir, sampler: str, budget: int):
        from verticalize.data.stage import data_fingerprint

        self.src, self.cfg = src, src.cfg
        self.sampler, self.budget = sampler, budget
        self.base = RunFolder(self.cfg, run_dir)
        self.dir = self.base.root / "tune"
        self.data_fingerprint = data_fingerprint
        self.metric, self.direction, self.replace_stop = tune_metric(src)
        self.params = check_space(src, sampler)
        self.rows: list[dict] = []
        self.best: dict | None = None

    # -- one trial
    def trial_raw(self, params: dict) -> dict:
        raw = copy.deepcopy(self.src.raw)
        for name, value in params.items():
            _assign(raw, tuple(name.split(".")), value)
        if self.replace_stop:
            _assign(raw, ("train", "early_stopping", "metric"), self.metric)
        return raw

    def run_trial(self, number: int, params: dict) -> tuple[float, bool, Path]:
        try:
            cfg = validate_config(self.trial_raw(params))
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, self.src.file, self.src.index)) from None
        cfg.source_file = self.cfg.source_file
        if cfg.train.mlflow and not cfg.train.mlflow_uri:  # trials track into the main store
            from verticalize.mlflow_store import tracking_uri

            cfg.train.mlflow_uri = tracking_uri(cfg, self.base.root.parent)
            cfg.train.mlflow_experiment = cfg.train.mlflow_experiment or f"{cfg.name}-tune"
        root = self.dir / f"trial-{number}"
        trial = RunFolder(cfg, root)
        fp = self.data_fingerprint(cfg)
        if fp == self.base_data["fingerprint"]:  # same data: a copy of the base run's data/
            if not trial.is_current("data", fp):
                shutil.rmtree(trial.stage_dir("data"), ignore_errors=True)
                shutil.copytree(self.base.stage_dir("data"), trial.stage_dir("data"))
        else:  # the trial changes data.*, seed or task: its own data stage
            data_stage.run(cfg, trial)
        result = train_stage.run(cfg, trial)
        scores = result.manifest.get("best_metric") or {}
        value = scores.get(self.metric)
        if value is None and get_task(cfg.task).lm_logits and len(scores) == 1:
            value = next(iter(scores.values()))
        if value is None or not math.isfinite(value):
            raise TrainingError(
                f"trial {number}: training recorded no finite validation {self.metric} "
                f"(got {value!r}); see {trial.stage_dir('train') / 'metrics.jsonl'}"
            )
        return float(value), result.skipped, root

    def objective(self, trial) -> float:
        grid = self.sampler == "grid"
        params = {p.name: p.suggest(trial, grid) for p in self.params}
        trial.set_user_attr("params", params)
        started = time.perf_counter()
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        console.print(f"[bold]tune[/bold]: trial {trial.number} ({shown})")
        try:
            value, reused, root = self.run_trial(trial.number, params)
        except Exception as e:  # a bad combination must not end the study
            message = str(e) if isinstance(e, VerticalizeError) else f"{type(e).__name__}: {e}"
            trial.set_user_attr("error", message)
            console.print(f"[yellow]tune[/yellow]: trial {trial.number} failed: {message}")
            raise _TrialFailed(message) from e
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
            _free_memory()
        trial.set_user_attr("reused", reused)
        trial.set_user_attr("run_dir", str(root))
        return value

    # -- after each trial: files, the best so far, disk
    def record(self, study, frozen) -> None:
        attrs = frozen.user_attrs
        state = frozen.state.name.lower()
        row = {
            "trial": frozen.number,
            "state": "complete" if state == "complete" else "failed",
            "params": attrs.get("params", {}),
            "value": frozen.value if state == "complete" else None,
            "metric": self.metric,
            "split": "validation",
            "seconds": attrs.get("seconds"),
            "reused": attrs.get("reused", False),
            "run_dir": attrs.get("run_dir", str(self.dir / f"trial-{frozen.number}")),
            "error": attrs.get("error"),
        }
        self.rows.append(row)
        with open(self.dir / "trials.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        if row["state"] == "complete":
            console.print(
                f"[green]tune[/green]: trial {row['trial']}: {self.metric} = {row['value']:.4f} "
                f"(validation){' (reused)' if row['reused'] else ''}"
            )
            if self.best is None or self.better(row["value"], self.best["value"]):
                self.best = row
                self.write_best_yaml()
        self.prune()
        self.write_tables()

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b

    def prune(self) -> None:
        """Only the best trial keeps model/ and checkpoints (they are most of the disk)."""
        for row in self.rows:
            if self.best is not None and row["trial"] == self.best["trial"]:
                continue
            root = Path(row["run_dir"])
            shutil.rmtree(root / "model", ignore_errors=True)
            train = root / "train"
            if train.is_dir():
                for p in sorted(train.rglob("*"), reverse=True):
                    if p.is_dir() and p.name in ("checkpoints", "best"):
                        shutil.rmtree(p, ignore_errors=True)

    def write_tables(self) -> None:
        names = [p.name for p in self.params]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["trial", "state", self.metric, "seconds", *names, "reused", "error"])
        for r in self.rows:
            writer.writerow(
                [r["trial"], r["state"], "" if r["value"] is None else r["value"], r["seconds"]]
                + [_cell(r["params"].get(n)) for n in names]
                + [r["reused"], r["error"] or ""]
            )
        _write_text(self.dir / "results.csv", buf.getvalue())
        write_json_atomic(self.dir / "summary.json", self.summary())

    def summary(self) -> dict:
        best = self.best
        return {
            "sampler": self.sampler,
            "trials": len(self.rows),
            "budget": self.budget,
            "grid_size": self.grid_size if self.sampler == "grid" else None,
            "metric": self.metric,
            "split": "validation",
            "direction": self.direction,
            "completed": sum(r["state"] == "complete" for r in self.rows),
            "failed": sum(r["state"] == "failed" for r in self.rows),
            "best": None
            if best is None
            else {
                "trial": best["trial"],
                "value": best["value"],
                "params": best["params"],
                "run_dir": best["run_dir"],
                "model_dir": str(Path(best["run_dir"]) / "model")
                if (Path(best["run_dir"]) / "model").is_dir()
                else None,
            },
            "best_config": str(self.dir / "best.yaml") if best else None,
            "config": self.source_name,
            "space": {
                p.name: p.spec.model_dump(exclude_none=True, exclude_defaults=True)
                for p in self.params
            },
            "tune_dir": str(self.dir),
            "results": self.rows,
        }

    @property
    def source_name(self) -> str:
        return str(self.cfg.source_file or self.src.file)

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.points or []) for p in self.params)

    # -- best.yaml
    def write_best_yaml(self, final: bool = False) -> None:
        best = self.best
        edits = list(self.src.edits)
        edits += [(tuple(k.split(".")), v) for k, v in best["params"].items()]
        if self.replace_stop:
            edits.append((("train", "early_stopping", "metric"), self.metric))
        target = copy.deepcopy(self.src.original)
        for parts, value in edits:
            _assign(target, parts, value)
        if self.cfg.source_file is not None:
            moved = _absolute_paths(target, self.cfg.source_file.parent)
            for parts, value in moved:
                _assign(target, parts, value)
            edits += moved
        header = (
            f"# verticalize tune ({self.sampler}): the best of {len(self.rows)} trials"
            f"{'' if final else ' so far'}: trial {best['trial']}, {self.metric} = "
            f"{best['value']:.6g} on the validation split.\n"
            f"# From {self.source_name}; relative file paths are made absolute.\n"
        )
        text = edited_yaml(self.src.text, edits, target)
        _write_text(self.dir / "best.yaml", header + text)


# ---------------------------------------------------------------- helpers


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
