"""Edits of a config: a dotted field set in the raw mapping (as `--set` does), relative
file paths made absolute, and the same edits made in the YAML text with its comments
kept (best.yaml)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from verticalize.errors import ConfigError


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
