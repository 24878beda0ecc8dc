"""What tune searches: the config as tune sees it (`Source`), and `tune.space` checked
against the config's fields, with each entry's grid points."""

from __future__ import annotations

import copy
import difflib
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from verticalize.config import (
    Config,
    SearchParam,
    apply_overrides,
    format_validation_error,
    line_for,
    line_index,
    load_config,
    validate_config,
)
from verticalize.errors import ConfigError

MAX_GRID = 100_000  # combinations; a larger grid is a budget nobody can spend
MAX_POINTS = 1_000  # grid points one int / float-with-step range may expand to


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
        line = line_for(self.index, loc) if self.index else None
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
                raise ConfigError(format_validation_error(e, file, {})) from None
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
    return Source(cfg, raw, original, edits, text, str(path), line_index(text))


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
