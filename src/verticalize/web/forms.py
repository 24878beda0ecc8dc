"""The new-project form, generated from the config's JSON schema: each field's type, default,
choices and help come from the schema; validation is the CLI's own (api.load), its messages
placed next to the field they name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from verticalize.config import Config
from verticalize.plugins import task_names
from verticalize.web.projects import CONFIG_NAME, config_error

# the fields a new project needs; everything else keeps the schema's default (edit the YAML)
FORM_FIELDS = (
    "name",
    "task",
    "domain",
    "data.sources.0.path",
    "data.sources.0.text",
    "data.sources.0.label",
    "data.labels",
    "model.base",
    "model.max_length",
    "train.epochs",
    "train.batch_size",
    "train.lr",
)


@dataclass
class Field:
    path: str
    label: str
    kind: str  # string | integer | number | list | choice
    default: object
    help: str
    choices: tuple[str, ...] = ()
    required: bool = False


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:  # Optional[X]: the non-null branch, with the outer default/help
        branch = next((b for b in node["anyOf"] if b.get("type") != "null"), node["anyOf"][0])
        node = {**_resolve(schema, branch), **{k: v for k, v in node.items() if k != "anyOf"}}
    return node


def _lookup(schema: dict, path: str) -> tuple[dict, bool]:
    node, required = schema, False
    for part in path.split("."):
        node = _resolve(schema, node)
        if part.isdigit():
            node = node["items"]
            continue
        required = part in node.get("required", [])
        node = node["properties"][part]
    return _resolve(schema, node), required


@cache
def form_fields() -> tuple[Field, ...]:
    schema = Config.model_json_schema()
    fields = []
    for path in FORM_FIELDS:
        node, required = _lookup(schema, path)
        kind = {"integer": "integer", "number": "number", "array": "list"}.get(
            node.get("type", "string"), "string"
        )
        choices: tuple[str, ...] = tuple(node.get("enum", ()))
        if path == "task":
            choices = tuple(task_names())
        if choices:
            kind = "choice"
        default = node.get("default")
        help_text = node.get("description") or node.get("title", "")
        label = path.replace(".0.", " ").replace("_", " ").replace(".", " › ")
        fields.append(Field(path, label, kind, default, help_text, choices, required))
    return tuple(fields)


def _value(field: Field, text: str):
    text = text.strip()
    if field.kind == "list":
        return [x.strip() for x in re.split(r"[,，\n]", text) if x.strip()]
    if field.kind in ("integer", "number"):
        try:
            return int(text) if field.kind == "integer" else float(text)
        except ValueError:
            return text  # the schema's check names it
    return text


def raw_config(form: dict[str, str]) -> dict:
    """The YAML mapping a filled form describes (blank fields keep their defaults)."""
    raw: dict = {}
    for field in form_fields():
        text = form.get(field.path, "")
        if not text.strip():
            continue
        node = raw
        parts = field.path.split(".")
        for i, part in enumerate(parts[:-1]):
            following = parts[i + 1]
            if following.isdigit():
                node = node.setdefault(part, [{}])[0]
            elif not part.isdigit():
                node = node.setdefault(part, {})
        node[parts[-1]] = _value(field, text)
    return raw


def field_errors(message: str) -> dict[str, list[str]]:
    """The CLI's error lines keyed by the form field they name ('' for the others)."""
    out: dict[str, list[str]] = {}
    for line in message.splitlines():
        m = re.match(r"^[^:]*(?::\d+)?: ([\w.]+): (.*)$", line)
        key = ""
        if m:
            named = m.group(1)
            key = next(
                (f.path for f in form_fields() if named == f.path or named.startswith(f.path)),
                "",
            )
        out.setdefault(key, []).append(line)
    return out


def create_project(root: Path, form: dict[str, str]) -> tuple[Path | None, dict[str, list[str]]]:
    """Write <root>/<name>/verticalize.yaml when the CLI accepts it; else (None, errors)."""
    raw = raw_config(form)
    name = str(raw.get("name", ""))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        return None, {"name": [f"name: use letters, digits, '-', '_' or '.' (got {name!r})"]}
    folder = root / name
    if (folder / CONFIG_NAME).exists():
        return None, {"name": [f"name: a project {name!r} exists already; choose another name"]}
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    candidate = folder / CONFIG_NAME
    candidate.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), "utf-8")
    error = config_error(candidate)
    if error is None:
        return candidate, {}
    candidate.unlink()
    if created:
        folder.rmdir()
    return None, field_errors(error.replace(str(candidate), CONFIG_NAME))
