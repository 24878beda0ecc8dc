"""User-defined PII kinds (data.pii.custom): a regular expression, or a dictionary file of
values matched whole, each turned into a detector that detect_pii runs beside its own."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from verticalize.config.data import CustomPiiKind
from verticalize.errors import ConfigError

Span = tuple[int, int]


def custom_detectors(
    kinds: list[CustomPiiKind], base_dir: Path | None = None
) -> dict[str, Callable[[str], Iterator[Span]]]:
    """kind name → detector; dictionary paths are relative to `base_dir` (the YAML's folder)."""
    out = {}
    for i, kind in enumerate(kinds):
        flags = re.IGNORECASE if kind.ignore_case else 0
        if kind.pattern is not None:
            pattern = re.compile(kind.pattern, flags)
        else:
            pattern = _dictionary_pattern(kind, i, base_dir, flags)
        out[kind.name] = _finder(pattern)
    return out


def _finder(pattern: re.Pattern) -> Callable[[str], Iterator[Span]]:
    return lambda view: (m.span() for m in pattern.finditer(view))


def _dictionary_pattern(kind: CustomPiiKind, i: int, base_dir: Path | None, flags) -> re.Pattern:
    path = Path(kind.dictionary)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    field = f"data.pii.custom[{i}].dictionary"
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{field}: {path}: cannot be read ({type(e).__name__}: {e}). Fix: point it at a "
            "UTF-8 text file with one value a line, relative to verticalize.yaml."
        ) from None
    terms = sorted({t.strip() for t in lines if t.strip()}, key=len, reverse=True)
    if not terms:
        raise ConfigError(f"{field}: {path} holds no values. Fix: write one value a line.")
    # a term counts only whole: not inside a longer word or number
    alternatives = "|".join(map(re.escape, terms))
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])", flags)
