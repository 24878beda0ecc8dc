"""Text units for comparing records: each Han or kana character is one unit (those scripts
have no spaces between words), every other run of letters and digits is one word. Text is
casefolded as dedup does; whitespace and punctuation are never units. Near-dup detection
and the contamination check both count in these units."""

from __future__ import annotations

import re

from verticalize.data.rules import SCRIPT_RANGES

_CJK = SCRIPT_RANGES["han"] + SCRIPT_RANGES["kana"]
_UNITS = re.compile(f"[^\\W_{_CJK}]+|[{_CJK}]")
_CJK_CHAR = re.compile(f"[{_CJK}]")


def units(text: str) -> list[str]:
    """The casefolded text's units, in order."""
    return _UNITS.findall(text.casefold())


def is_cjk(unit: str) -> bool:
    """True for a unit that is one Han or kana character."""
    return _CJK_CHAR.fullmatch(unit) is not None
