"""Values computed from files, kept while those files are unchanged (mtime and size): the
pages over many projects read the same configs, reports and MLflow stores on every load."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_KEPT: dict[Hashable, tuple[tuple, object]] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def while_unchanged(key: Hashable, files: Iterable[Path], compute: Callable[[], T]) -> T:
    """compute(), or what it gave last time for `key` if none of `files` changed since (a
    missing file counts as a state). What raises is never kept."""
    stamp = tuple(_stamp(f) for f in files)
    known = _KEPT.get(key)
    if known is None or known[0] != stamp:
        known = _KEPT[key] = (stamp, compute())
    return known[1]  # type: ignore[return-value]
