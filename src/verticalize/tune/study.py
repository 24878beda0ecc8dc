"""`verticalize tune` (T8): grid / random / TPE search over any config field.

The data stage runs once in the run folder; each trial is a normal train stage in its own
run folder `<run>/tune/trial-<k>` (a copy of the base data/, or its own data stage when
the trial changes data.*, seed or task) and is scored on the VALIDATION split, never the
test split. Results are written as each trial ends:

  <run>/tune/trials.jsonl   one line a trial: params, value, state, seconds, error
  <run>/tune/results.csv    the same as a table
  <run>/tune/summary.json   sampler, metric, direction, best trial, path of best.yaml
  <run>/tune/best.yaml      the original YAML with the best params applied

Only the best trial keeps its model/ and checkpoints; the others keep their logs.
"""

from __future__ import annotations

import copy
import csv
import difflib
import gc
import io
import json
import math
import os
import shutil
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from verticalize.config import (
    Config,
    SearchParam,
    _format_validation_error,
    _line_for,
    _line_index,
    apply_overrides,
    load_config,
    validate_config,
)
from verticalize.console import console
from verticalize.data import stage as data_stage
from verticalize.errors import ConfigError, TrainingError, VerticalizeError
from verticalize.metrics import lower_is_better
from verticalize.plugins import get_task
from verticalize.runfolder import RunFolder, write_json_atomic
from verticalize.train import stage as train_stage

SAMPLERS = ("grid", "random", "tpe")
MAX_GRID = 100_000  # combinations; a larger grid is a budget nobody can spend
MAX_POINTS = 1_000  # grid points one int / float-with-step range may expand to


class _TrialFailed(Exception):
    """Raised inside the objective so Optuna marks the trial failed and goes on."""


@dataclass
class Source:
    """The config as tune sees it: validated, raw (overrides applied), the YAML text."""

    cfg: Config
    raw: dict  # the YAML mapping with --set overrides applied
    original: dict  # the YAML mapping as written
    edits: list[tuple[tuple[str, ...], Any]]  # the --set overrides as (path, value)
    text: str | None
    file: str  # shown in messages
    index: dict

    def where(self, loc: tuple) -> str:
        line = _line_for(self.index, loc) if self.index else None
        return f"{self.file}:{line}" if line else self.file


@dataclass
class Param:
    name: str
    spec: SearchParam
    points: list | None  # grid points (None: not finite)

    def encoded(self, values: list) -> list:
        return [_encode(v) for v in values]

    def suggest(self, trial, grid: bool) -> Any:
        s = self.spec
        if grid:
            assert self.points is not None
            return self.decode(trial.suggest_categorical(self.name, self.encoded(self.points)))
        if s.kind == "categorical" or s.low is None:
            choices = s.choices or s.values
            return self.decode(trial.suggest_categorical(self.name, self.encoded(choices)))
        if s.kind == "int":
            return trial.suggest_int(
                self.name, int(s.low), int(s.high), step=int(s.step or 1), log=s.log
            )
        return trial.suggest_float(self.name, s.low, s.high, step=s.step, log=s.log)

    def decode(self, value: Any) -> Any:
        if isinstance(value, str):
            for v in (self.spec.choices or []) + (self.spec.values or []) + (self.points or []):
                if _encode(v) == value:
                    return copy.deepcopy(v)
        return value


def _encode(value: Any) -> Any:
    """Optuna's categorical choices are None / bool / int / float / str: JSON for the rest."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------- the config and its space


def _source(config: str | Path | Config, overrides: list[str] | None) -> Source:
    if isinstance(config, Config):  # in memory: its full dump stands in for the YAML
        raw = apply_overrides(config.model_dump(mode="json"), overrides or [])
        file = str(config.source_file or "config")
        cfg = config
        if overrides:
            try:
                cfg = validate_config(raw)
            except ValidationError as e:
                raise ConfigError(_format_validation_error(e, file, {})) from None
            cfg.source_file = config.source_file
        return Source(cfg, raw, copy.deepcopy(raw), [], None, file, {})
    path = Path(config)
    cfg = load_config(path, overrides)  # every schema error, with file:line
    text = path.read_text(encoding="utf-8")
    original = yaml.safe_load(text)
    raw = apply_overrides(copy.deepcopy(original), overrides or [])
    edits = []
    for item in overrides or []:
        key, _, value = item.partition("=")
        edits.append((tuple(key.split(".")), yaml.safe_load(value)))
    return Source(cfg, raw, original, edits, text, str(path), _line_index(text))


def _members(ann: Any) -> list:
    """The types an annotation allows, without Annotated / Optional wrappers."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _members(get_args(ann)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(ann) if a is not type(None) for m in _members(a)]
    return [ann]


def _field(name: str, raw: dict, src: Source) -> tuple[TypeAdapter, list]:
    """A validator for the config field `name` (dotted) and the types it takes;
    ConfigError when there is no such field."""
    loc = ("tune", "space", name)
    parts = name.split(".")
    if parts[0] == "tune" or parts[0] == "source_file":
        raise ConfigError(
            f"{src.where(loc)}: tune.space: '{name}' cannot be tuned. Fix: name a field of "
            "data, model, train, eval, generation or ner (or seed)."
        )
    ann: Any = Config
    meta: list = []
    node: Any = raw
    for i, part in enumerate(parts):
        members = _members(ann)
        here = ".".join(parts[:i]) or "the top level"
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        lists = [m for m in members if get_origin(m) is list]
        dicts = [m for m in members if get_origin(m) is dict]
        if models:
            hits = [m for m in models if part in m.model_fields]
            if not hits or part in ("source_file", "tune"):
                keys = sorted({k for m in models for k in m.model_fields} - {"source_file", "tune"})
                near = difflib.get_close_matches(part, keys, n=1)
                hint = f"did you mean '{'.'.join([*parts[:i], near[0]])}'? " if near else ""
                raise ConfigError(
                    f"{src.where(loc)}: tune.space: '{name}' is not a config field ('{part}' "
                    f"is not a key of {here}). Fix: {hint}keys there: {', '.join(keys)}."
                )
            info = hits[0].model_fields[part]
            ann, meta = info.annotation, list(info.metadata)
        elif lists:
            size = len(node) if isinstance(node, list) else 0
            if not part.isdigit() or int(part) >= size:
                raise ConfigError(
                    f"{src.where(loc)}: tune.space: '{name}': {here} is a list of {size} "
                    f"entries, so '{part}' names none of them. Fix: use an index from 0 to "
                    f"{max(size - 1, 0)}, e.g. {here}.0."
                )
            ann, meta = get_args(lists[0])[0], []
        elif dicts:
            ann, meta = get_args(dicts[0])[1], []
        else:
            raise ConfigError(
                f"{src.where(loc)}: tune.space: '{name}': {here} is a value, not a section. "
                f"Fix: tune {here} itself."
            )
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = None
    return TypeAdapter(Annotated[ann, *meta] if meta else ann), _members(ann)


def _grid_points(name: str, spec: SearchParam, src: Source) -> list | None:
    if spec.values:
        values = spec.values
    elif spec.kind == "categorical":
        values = spec.choices
    elif spec.kind == "int" or spec.step:
        step = spec.step or 1
        n = math.floor((spec.high - spec.low) / step + 1e-9) + 1
        if n > MAX_POINTS:
            raise ConfigError(
                f"{src.where(('tune', 'space', name))}: tune.space.{name}: the range gives "
                f"{n} grid points. Fix: give values: [...] or a larger step."
            )
        if spec.kind == "int":
            values = list(range(int(spec.low), int(spec.high) + 1, int(step)))
        else:
            values = [round(spec.low + k * step, 12) for k in range(n)]
    else:
        return None
    unique: list = []
    for v in values:
        if _encode(v) not in [_encode(u) for u in unique]:
            unique.append(v)
    return unique


def check_space(src: Source, sampler: str) -> list[Param]:
    """Every tune.space entry names a config field, fits its type, and (grid) is finite."""
    space = src.cfg.tune.space
    if not space:
        raise ConfigError(
            f"{src.where(('tune',))}: tune.space is empty: there is nothing to tune. Fix: add "
            "e.g.\n  tune:\n    space:\n      train.lr: {type: float, low: 1.0e-5, high: "
            "1.0e-3, log: true}"
        )
    params = []
    for name, spec in space.items():
        loc = ("tune", "space", name)
        adapter, leaves = _field(name, src.raw, src)
        shown = ", ".join(getattr(t, "__name__", str(t)) for t in leaves)
        if spec.kind == "float" and spec.low is not None and float not in leaves:
            fix = "use type: int" if int in leaves else "use type: categorical with choices"
            raise ConfigError(
                f"{src.where(loc)}: tune.space.{name}: type: float does not fit the field, "
                f"which takes {shown}. Fix: {fix}."
            )
        if spec.kind == "int" and spec.low is not None and not ({int, float} & set(leaves)):
            raise ConfigError(
                f"{src.where(loc)}: tune.space.{name}: type: int does not fit the field, "
                f"which takes {shown}. Fix: use type: categorical with choices."
            )
        candidates = [("low", spec.low), ("high", spec.high)] if spec.low is not None else []
        if spec.kind == "int":
            candidates = [(k, int(v)) for k, v in candidates]
        candidates += [("choices", v) for v in spec.choices or []]
        candidates += [("values", v) for v in spec.values or []]
        for key, value in candidates:
            try:
                adapter.validate_python(value)
            except ValidationError as e:
                why = e.errors()[0]["msg"].removeprefix("Value error, ")
                raise ConfigError(
                    f"{src.where(loc + (key,))}: tune.space.{name}: {key} {value!r} is "
                    f"not a valid value of {name}: {why}. Fix: keep the search inside what "
                    f"{name} accepts."
                ) from None
        points = _grid_points(name, spec, src)
        if sampler == "grid" and points is None:
            raise ConfigError(
                f"{src.where(loc)}: tune.space.{name}: the grid sampler needs a finite list "
                "of values, and a float range has none. Fix: add values: [1.0e-5, 1.0e-4] "
                "(or step:), or use --sampler random / tpe."
            )
        params.append(Param(name, spec, points))
    if sampler == "grid":
        size = math.prod(len(p.points) for p in params)
        if size > MAX_GRID:
            raise ConfigError(
                f"{src.where(('tune', 'space'))}: tune.space: the grid has {size:,} "
                f"combinations. Fix: list fewer values, or use --sampler random / tpe."
            )
    return params


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


def _assign(raw: dict, parts: tuple[str, ...], value: Any) -> None:
    """Set a dotted field in the raw mapping, as `--set` does (sections made as needed)."""
    node: Any = raw
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"'{'.'.join(parts)}': '{part}' is not a section or list index")
    last = parts[-1]
    if isinstance(node, list) and last.isdigit():
        node[int(last)] = copy.deepcopy(value)
    else:
        node[last] = copy.deepcopy(value)


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
            raise ConfigError(_format_validation_error(e, self.src.file, self.src.index)) from None
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


def _absolute_paths(raw: dict, base: Path) -> list[tuple[tuple[str, ...], str]]:
    """Edits that point files named relative to the original YAML at their absolute path."""

    def absolute(value: Any, must_exist: bool = False) -> str | None:
        if not isinstance(value, str) or not value or value.startswith("pkg:"):
            return None
        spec, sep, member = value.partition("#")
        try:
            if Path(spec).expanduser().is_absolute():
                return None
            full = base / spec
            if must_exist and not full.exists():
                return None
        except OSError:  # e.g. Jinja text that is too long for a path
            return None
        return os.path.normpath(full) + sep + member

    edits = []

    def add(parts: tuple[str, ...], value: Any, must_exist: bool = False) -> None:
        new = absolute(value, must_exist)
        if new is not None and new != value:
            edits.append((parts, new))

    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    for i, s in enumerate(data.get("sources") or []):
        if isinstance(s, dict):
            add(("data", "sources", str(i), "path"), s.get("path"))
    add(("data", "key_file"), data.get("key_file"))
    for section, keys in (("segment", ("user_dicts",)), ("augment", ("thesaurus", "protect"))):
        block = data.get(section) if isinstance(data.get(section), dict) else {}
        for key in keys:
            for i, v in enumerate(block.get(key) or []):
                add(("data", section, key, str(i)), v)
    segment = data.get("segment") if isinstance(data.get("segment"), dict) else {}
    add(("data", "segment", "stop_words"), segment.get("stop_words"))
    gen = raw.get("generation") if isinstance(raw.get("generation"), dict) else {}
    template = gen.get("chat_template")
    if isinstance(template, str) and "{" not in template:
        add(("generation", "chat_template"), template)
    add(("generation", "incremental_from"), gen.get("incremental_from"), must_exist=True)
    return edits


# ---------------------------------------------------------------- YAML text edits


class _CannotEdit(Exception):
    pass


def _flow(value: Any) -> str:
    """`value` as one line of YAML (a flow collection for lists and mappings)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _edit_one(text: str, parts: tuple[str, ...], value: Any) -> str:
    root = yaml.compose(text)
    node = root
    for i, part in enumerate(parts):
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:
                return _insert(text, node, root, parts[i:], value)
            node = child
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
        else:
            raise _CannotEdit
    one_line = isinstance(node, yaml.ScalarNode) and node.style in (None, "", "'", '"')
    if not (one_line or getattr(node, "flow_style", False)):
        raise _CannotEdit
    if node.start_mark.line != node.end_mark.line:
        raise _CannotEdit
    return text[: node.start_mark.index] + _flow(value) + text[node.end_mark.index :]


def _insert(text: str, mapping, root, rest: tuple[str, ...], value: Any) -> str:
    """Add `rest: value` (creating sections) to a block mapping that lacks rest[0]."""
    if mapping.flow_style or not mapping.value or any(p.isdigit() for p in rest):
        raise _CannotEdit
    for part in reversed(rest[1:]):
        value = {part: value}
    block = yaml.safe_dump(
        {rest[0]: value}, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    if mapping is root:  # a new top-level key goes at the end
        return text + ("" if text.endswith("\n") else "\n") + block
    first = mapping.value[0][0]
    start = text.rfind("\n", 0, first.start_mark.index) + 1
    if text[start : first.start_mark.index].strip():  # e.g. "- path: …": no clean line
        raise _CannotEdit
    pad = " " * first.start_mark.column
    return text[:start] + "".join(pad + line for line in block.splitlines(True)) + text[start:]


def edited_yaml(text: str | None, edits: list[tuple[tuple[str, ...], Any]], target: dict) -> str:
    """`text` with `edits` applied in place (comments kept) when that gives exactly `target`;
    otherwise `target` written out afresh."""
    if text is not None:
        try:
            out = text
            for parts, value in edits:
                out = _edit_one(out, parts, value)
            if yaml.safe_load(out) == target:
                return out
        except (_CannotEdit, yaml.YAMLError):
            pass
    return yaml.safe_dump(target, sort_keys=False, allow_unicode=True)


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


def _sampler(name: str, params: list[Param], seed: int):
    import optuna

    if name == "grid":
        space = {p.name: p.encoded(p.points) for p in params}
        return optuna.samplers.GridSampler(space, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


# ---------------------------------------------------------------- entry point


def tune(
    config: str | Path | Config,
    run_dir: str | Path | None = None,
    trials: int | None = None,
    sampler: Literal["grid", "random", "tpe"] | None = None,
    overrides: list[str] | None = None,
) -> dict:
    """Search `tune.space` with Optuna; returns the summary written to <run>/tune/summary.json
    (with every trial under "results")."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - a declared dependency
        raise VerticalizeError(
            "tune needs Optuna, which is not installed. Fix: pip install 'optuna>=4,<6'."
        ) from None

    src = _source(config, overrides)
    cfg = src.cfg
    sampler = sampler or cfg.tune.sampler
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r}: unknown sampler. Fix: use grid, random or tpe.")
    budget = trials if trials is not None else cfg.tune.trials
    if budget < 1:
        raise ConfigError(f"--trials {budget}: the budget must be at least 1. Fix: e.g. 8.")
    study_state = _Study(src, run_dir, sampler, budget)
    n = budget
    if sampler == "grid":
        n = min(budget, study_state.grid_size)
        if budget < study_state.grid_size:
            console.print(
                f"tune: the grid has {study_state.grid_size} points; a budget of {budget} "
                f"trials tries {budget} of them"
            )

    data = data_stage.run(cfg, RunFolder(cfg, run_dir))  # once; the trials copy it
    study_state.base_data = data.manifest
    if not (data.manifest.get("splits") or {}).get("validation"):
        raise ConfigError(
            f"{src.where(('data', 'split', 'validation'))}: tune scores trials on the "
            "validation split, and it is empty. Fix: set data.split.validation (e.g. 0.1)."
        )
    tune_dir = study_state.dir
    tune_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("trials.jsonl", "results.csv", "summary.json", "best.yaml"):
        (tune_dir / stale).unlink(missing_ok=True)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by us
    try:
        study = optuna.create_study(
            direction=study_state.direction,
            sampler=_sampler(sampler, study_state.params, cfg.seed),
            study_name=f"{cfg.name}-tune",
        )
        study.optimize(
            study_state.objective,
            n_trials=n,
            catch=(_TrialFailed,),
            callbacks=[study_state.record],
            gc_after_trial=False,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)

    used = {f"trial-{r['trial']}" for r in study_state.rows}
    for folder in tune_dir.glob("trial-*"):  # trials of an earlier, longer call
        if folder.is_dir() and folder.name not in used:
            shutil.rmtree(folder, ignore_errors=True)
    if study_state.best is not None:
        study_state.write_best_yaml(final=True)
    summary = study_state.summary()
    if study_state.best is None:
        first = next((r["error"] for r in study_state.rows if r["error"]), "unknown")
        raise TrainingError(
            f"tune: all {len(study_state.rows)} trials failed; the first said: {first}. "
            f"Fix: narrow tune.space to values that train (details in {tune_dir / 'trials.jsonl'})."
        )
    try:
        load_config(tune_dir / "best.yaml")
    except ConfigError as e:  # should not happen: say so rather than hide it
        console.print(f"[yellow]warning:[/yellow] best.yaml does not load: {e}")
    return summary


__all__ = ["tune", "check_space", "edited_yaml", "tune_metric"]
