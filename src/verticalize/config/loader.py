"""Load verticalize.yaml: `--set` overrides, the line of every YAML key, and validation
errors turned into one `ConfigError` naming file:line, field, bad value and fix. A YAML for
`verticalize serve` alone may hold just its serve: section (`load_serve_config`)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from verticalize.config.data import SourceKindError
from verticalize.config.evaluate import BaselineError, LabelError, MetricError
from verticalize.config.schema import Config, config_model, validate_config
from verticalize.config.serving import ServeConfig, ServeOnlyConfig
from verticalize.config.train import PretrainSetupError
from verticalize.errors import ConfigError

# ---------------------------------------------------------------- loading + error messages


def line_index(text: str) -> dict[tuple, int]:
    """Map every key / list-item path in the YAML to its 1-based line number."""
    index: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = path + (key.value,)
                index[p] = key.start_mark.line + 1
                walk(value, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_for(index: dict[tuple, int], loc: tuple) -> int | None:
    """The line of `loc` in the YAML, or of its nearest ancestor that has one; None if none."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in index:
            return index[loc[:n]]
    return None


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return [k for k in model.model_fields if k != "source_file"]


def _fix_for(err: dict, loc: tuple, root: type[BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc, root)
        near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        return f"{hint}remove or rename it; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"add '{loc[-1]}:' to this section (see `verticalize init` for an example)"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "give a whole number, e.g. 3"
    if kind in ("float_parsing", "float_type"):
        return "give a number, e.g. 0.1 or 5e-5"
    if kind in ("bool_parsing", "bool_type"):
        return "give true or false"
    if kind in ("string_type",):
        return "give a text value"
    if kind in ("list_type",):
        return "give a YAML list (lines starting with '- ')"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "give a YAML mapping (indented 'key: value' lines)"
    if kind == "literal_error":
        return "use one of the values listed above"
    if kind == "string_pattern_mismatch":
        return "use letters, digits, '-', '_' or '.' (it becomes a folder name)"
    return "correct the value (see `verticalize init` for a commented example)"


def format_validation_error(
    exc: ValidationError,
    file: str,
    index: dict,
    raw: dict | None = None,
    root: type[BaseModel] | None = None,
) -> str:
    """One line per error: `file:line: field: problem (got value). Fix: …`; `index` is
    `line_index` of the YAML text ({} when there is none), `raw` the mapping validated and
    `root` its model (default: the Config of raw's task)."""
    task = (raw or {}).get("task", "classification")
    root = root or config_model(task if isinstance(task, str) else "")
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, LabelError):
            loc, value = ctx_err.loc, ctx_err.value
            msg = f"label {value!r} is not in the label set {ctx_err.labels}"
            fix = "use one of those labels, or add it to data.labels"
        elif isinstance(ctx_err, SourceKindError | BaselineError | PretrainSetupError):
            loc, value = ctx_err.loc, ctx_err.value
            msg, fix = str(ctx_err), ctx_err.fix
        elif isinstance(ctx_err, MetricError):
            loc, value = ctx_err.loc, ctx_err.value
            msg = f"unknown metric {value!r}"
            fix = f"use one of: {', '.join(ctx_err.known)}"
        else:
            value = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key '{loc[-1]}'"
            fix = _fix_for(err, loc, root)
        line = line_for(index, loc)
        where = f"{file}:{line}" if line else file
        shown = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {value!r})"
        lines.append(f"{where}: {_dotted(loc)}: {msg}{shown}. Fix: {fix}.")
    return "\n".join(lines)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to the raw config mapping."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=1")
        node: Any = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise ConfigError(f"--set {item!r}: '{part}' does not name a section or list index")
        last = parts[-1]
        parsed = yaml.safe_load(value)
        if isinstance(node, list) and last.isdigit():
            node[int(last)] = parsed
        else:
            node[last] = parsed
    return raw


def _read_yaml(path: Path) -> tuple[str, dict]:
    """The text of a YAML config and its top-level mapping; ConfigError when it is missing,
    not YAML, or not a mapping."""
    if not path.is_file():
        raise ConfigError(
            f"{path}: config file not found. Fix: pass the path to a verticalize.yaml, "
            f"or create one with `verticalize init {path.parent}`."
        )
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(
            f"{where}: not valid YAML ({problem}). Fix: check indentation and quoting there."
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: expected a mapping with sections data, model, train, eval.")
    return text, raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, validate and cross-check verticalize.yaml. Raises ConfigError with file:line."""
    path = Path(path)
    text, raw = _read_yaml(path)
    raw = apply_overrides(raw, overrides or [])
    index = line_index(text)
    try:
        cfg = validate_config(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path), index, raw)) from None
    cfg.source_file = path.resolve()
    from verticalize.source_paths import check_sources_exist

    check_sources_exist(cfg, lambda loc: f"{path}:{line_for(index, loc) or 1}")
    return cfg


def is_serve_only(path: str | Path) -> bool:
    """Whether the YAML at `path` is for `verticalize serve` alone rather than a project:
    it has no data: section (then it may hold only serve:, see `load_serve_config`)."""
    return "data" not in _read_yaml(Path(path))[1]


def load_serve_config(path: str | Path | None, overrides: list[str] | None = None) -> ServeConfig:
    """The serve: settings of a YAML holding only that section, or with `path` None the
    defaults, with `--set serve.…` overrides applied. Raises ConfigError naming file:line
    (or --set), field, bad value and fix."""
    text, raw, where = "", {}, "--set"
    if path is not None:
        text, raw = _read_yaml(Path(path))
        where = str(path)
    raw = apply_overrides(raw, overrides or [])
    try:
        return ServeOnlyConfig.model_validate(raw).serve
    except ValidationError as e:
        index = line_index(text) if text else {}
        raise ConfigError(format_validation_error(e, where, index, raw, ServeOnlyConfig)) from None
