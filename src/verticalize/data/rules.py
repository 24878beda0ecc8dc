"""Validation rules (D2): the first rule a record breaks, with the field, value and a fix.

A rule reads `text`, `label`, or a metadata field (`record["meta"][field]`). A value that is
absent, None or a blank string counts as missing: the `required` rule fails on it, and every
other rule skips it, so `type: int` on an optional column does not reject its empty cells.

`RuleSet` compiles the rules once; it runs on every record of large inputs, so each check is
a dictionary lookup plus at most a few regular-expression scans.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from verticalize.config import (
    DateRule,
    GarbageRule,
    LabelInSetRule,
    LengthRule,
    RangeRule,
    RegexRule,
    RequiredRule,
    Rule,
    ScriptRule,
    TypeRule,
)

MAX_VALUE_CHARS = 200

SCRIPT_RANGES = {
    "han": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f",
    "latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff\uff21-\uff3a\uff41-\uff5a",
    "cyrillic": "\u0400-\u052f",
    "arabic": "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff",
    "kana": "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "hangul": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
}
# counting by deleting what does not count is faster than findall on long text
_NOT_LETTER = re.compile(r"[\W\d_]+")
_NOT_IN_SCRIPT = {name: re.compile(f"[^{ranges}]+") for name, ranges in SCRIPT_RANGES.items()}

# C0/C1 controls except \t \n \r, and the lone surrogates the reader leaves for undecodable bytes
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\udc80-\udcff]")
# one UTF-8 continuation byte as Latin-1 or cp1252 shows it
_CONT = "[\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]"
# UTF-8 read as Latin-1/cp1252 ('cafÃ©', 'itâ€™s', 'Â ' from a no-break space), and U+FFFD
# left where GBK (or any other codec) was read as UTF-8
_MOJIBAKE = re.compile(
    rf"[\xc2-\xdf]{_CONT}|[\xe0-\xef]{_CONT}{{2}}|[\xf0-\xf4]{_CONT}{{3}}|â€|[ÂÃ](?=\s|$)|\ufffd+"
)

_INT = re.compile(r"\s*[+-]?\d+\s*")
_FLOAT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_BOOLS = {"true", "false", "1", "0", "yes", "no", "y", "n", "t", "f"}


@dataclass(frozen=True)
class Violation:
    """The first rule a record breaks: rule name, field, the (shortened) value, and why + fix."""

    rule: str
    field: str
    value: Any
    detail: str


# a check gets a present (non-missing) value and returns the reason it is bad, or None
Check = Callable[[Any], "str | None"]


class RuleSet:
    """Rules compiled once; `check(record)` returns the first `Violation` or None."""

    def __init__(self, rules: list[Rule], labels: list[str] | None = None):
        self._compiled: list[tuple[str, str, bool, Check]] = [
            (rule.name or rule.rule, rule.field, rule.rule == "required", _compile(rule, labels))
            for rule in rules
        ]

    def check(self, record: dict) -> Violation | None:
        """The first broken rule, in configuration order; None when the record passes all."""
        meta = record.get("meta") or {}
        for name, field, required, check in self._compiled:
            if field == "text" or field == "label":
                value = record.get(field)
            else:
                value = meta.get(field)
            if _missing(value):
                if required:
                    return Violation(
                        name, field, _short(value), f"{field} is missing or blank; fill it in"
                    )
                continue
            problem = check(value)
            if problem is not None:
                return Violation(name, field, _short(value), problem)
        return None


def check_record(record: dict, rules: list[Rule], labels: list[str] | None) -> Violation | None:
    """The first rule `record` breaks, or None. Compiles the rules on each call: for many
    records build one `RuleSet` and call its `check`."""
    return RuleSet(rules, labels).check(record)


def script_share(text: str, script: str) -> float | None:
    """Share of the letters in `text` that belong to `script`; None when it has no letters."""
    letters = _NOT_LETTER.sub("", text)
    if not letters:
        return None
    return len(_NOT_IN_SCRIPT[script].sub("", letters)) / len(letters)


def control_share(text: str) -> float:
    """Share of characters that are control characters (not \\t \\n \\r) or lone surrogates."""
    return len(_CONTROL.findall(text)) / len(text) if text else 0.0


def mojibake_share(text: str) -> float:
    """Share of characters inside typical mojibake sequences or U+FFFD replacement marks."""
    if not text:
        return 0.0
    return sum(m.end() - m.start() for m in _MOJIBAKE.finditer(text)) / len(text)


def _compile(rule: Rule, labels: list[str] | None) -> Check:
    if isinstance(rule, RequiredRule):
        return lambda value: None
    if isinstance(rule, TypeRule):
        return _type_check(rule.type)
    if isinstance(rule, RegexRule):
        return _regex_check(rule.pattern)
    if isinstance(rule, DateRule):
        return _date_check(rule.format)
    if isinstance(rule, RangeRule):
        return _range_check(rule.min, rule.max)
    if isinstance(rule, LabelInSetRule):
        return _label_check(labels)
    if isinstance(rule, LengthRule):
        return _length_check(rule.min, rule.max)
    if isinstance(rule, ScriptRule):
        return _script_check(rule.script, rule.min_share)
    if isinstance(rule, GarbageRule):
        return _garbage_check(rule)
    raise TypeError(f"unknown rule {rule!r}")


def _type_check(kind: str) -> Check:
    def check(value: Any) -> str | None:
        if _is_type(value, kind):
            return None
        return f"{value!r} is not {_ARTICLE[kind]}; correct the value or drop the type rule"

    return check


_ARTICLE = {"int": "an int", "float": "a float", "bool": "a bool", "str": "a string"}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "int":
        return isinstance(value, int) or (isinstance(value, str) and bool(_INT.fullmatch(value)))
    if kind == "float":
        return isinstance(value, int | float) or (
            isinstance(value, str) and bool(_FLOAT.fullmatch(value))
        )
    return value in (0, 1) if isinstance(value, int) else str(value).strip().lower() in _BOOLS


def _regex_check(pattern: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: Any) -> str | None:
        if compiled.fullmatch(value if isinstance(value, str) else str(value)):
            return None
        return f"{value!r} does not match /{pattern}/; correct the value or the pattern"

    return check


def _date_check(fmt: str) -> Check:
    def check(value: Any) -> str | None:
        try:
            datetime.strptime(str(value).strip(), fmt)
        except ValueError:
            return f"{value!r} is not a date in the format {fmt!r}; correct the value or format"
        return None

    return check


def _range_check(low: float | None, high: float | None) -> Check:
    def check(value: Any) -> str | None:
        number = _number(value)
        if number is None:
            return f"{value!r} is not a number; the range rule needs one"
        if (low is not None and number < low) or (high is not None and number > high):
            return f"{number:g} is outside [{_bound(low)}, {_bound(high)}]; correct the value"
        return None

    return check


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and _FLOAT.fullmatch(value):
        number = float(value)
    else:
        return None
    return None if number != number else number  # NaN compares unequal to itself


def _bound(limit: float | None) -> str:
    return "…" if limit is None else f"{limit:g}"


def _label_check(labels: list[str] | None) -> Check:
    allowed = frozenset(labels) if labels is not None else None

    def check(value: Any) -> str | None:
        if allowed is None or str(value) in allowed:
            return None
        return (
            f"{value!r} is not in the label set {sorted(allowed)}; fix it or add it to data.labels"
        )

    return check


def _length_check(low: int | None, high: int | None) -> Check:
    def check(value: Any) -> str | None:
        n = len(value) if isinstance(value, str | list | dict) else len(str(value))
        if low is not None and n < low:
            return f"{n} characters, under the minimum {low}; drop or lengthen the record"
        if high is not None and n > high:
            return f"{n} characters, over the maximum {high}; split or shorten the record"
        return None

    return check


def _script_check(script: str, min_share: float) -> Check:
    def check(value: Any) -> str | None:
        share = script_share(str(value), script)
        if share is None:
            return f"no letters at all, so no {script} script; check the field holds text"
        if share < min_share:
            return (
                f"only {share:.0%} of letters are {script} (needs {min_share:.0%}); wrong "
                "language or encoding — fix the source or lower min_share"
            )
        return None

    return check


def _garbage_check(rule: GarbageRule) -> Check:
    repeat = re.compile(rf"(\S)\1{{{rule.max_repeat},}}")

    def check(value: Any) -> str | None:
        text = value if isinstance(value, str) else str(value)
        m = repeat.search(text)
        if m:
            return (
                f"{m.group(1)!r} repeated {len(m.group())} times (max {rule.max_repeat}); "
                "clean the text or raise max_repeat"
            )
        share = control_share(text)
        if share > rule.max_control_share:
            return (
                f"{share:.1%} control or undecodable characters (max "
                f"{rule.max_control_share:.1%}); check the source's encoding"
            )
        share = mojibake_share(text)
        if share > rule.max_mojibake_share:
            return (
                f"{share:.1%} mojibake (max {rule.max_mojibake_share:.1%}), text decoded with "
                "the wrong codec; set data.sources[].encoding (e.g. gbk, latin-1)"
            )
        return None

    return check


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _short(value: Any) -> Any:
    """The value as quarantine shows it: JSON scalars as they are, text cut to 200 characters
    with undecodable bytes spelled out (lone surrogates cannot be written as UTF-8)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
