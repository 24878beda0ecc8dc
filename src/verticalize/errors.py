"""Errors a user can act on (the CLI prints them without a traceback and exits non-zero),
and the crash log for the ones they cannot: a traceback without locals or data, in a file."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


class VerticalizeError(Exception):
    """Base class: the message names the file / line / field, the bad value and the fix."""

    exit_code = 1


class ConfigError(VerticalizeError):
    """verticalize.yaml is malformed or inconsistent."""

    exit_code = 2


class DataError(VerticalizeError):
    """An input file cannot be read, or no usable records remain."""

    exit_code = 3


class ModelError(VerticalizeError):
    """A base model cannot be found or loaded."""

    exit_code = 4


class TrainingError(VerticalizeError):
    """Training cannot start or continue (e.g. a corrupt checkpoint)."""

    exit_code = 5


class StageOrderError(VerticalizeError):
    """A stage was asked to run before the stage whose files it reads."""

    exit_code = 6


class EvalError(VerticalizeError):
    """Runs cannot be evaluated or compared (e.g. different test sets)."""

    exit_code = 7


class ExportError(VerticalizeError):
    """A model cannot be exported, or its quantized copy lost too much accuracy to publish."""

    exit_code = 8


class RegistryError(VerticalizeError):
    """The model registry refused an action (unknown model / alias, promotion gate failed)."""

    exit_code = 9


class ServeError(VerticalizeError):
    """The service cannot start (bad keys file, port in use, model missing)."""

    exit_code = 10


# ---------------------------------------------------------------- unexpected errors

# quoted text in an exception message is usually a value from the data (KeyError('…'),
# "invalid literal for int(): '…'"): the crash log keeps the message's shape, not the value
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_MESSAGE_CHARS = 200


def scrubbed_message(exc: BaseException, mask: Callable[[str], str] | None = None) -> str:
    """The exception's message with quoted values elided, then `mask` applied (e.g. PII
    masking, for values that were not quoted), and its length capped."""
    text = _QUOTED.sub("'…'", str(exc))
    if mask is not None:
        text = mask(text)
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"


def crash_traceback(exc: BaseException, mask: Callable[[str], str] | None = None) -> str:
    """The traceback of `exc` and the exceptions chained to it: files, lines, functions and
    source lines, with scrubbed messages (see scrubbed_message); never a local variable or a
    record."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    parts = []
    for i, e in enumerate(reversed(chain)):
        if i:
            parts.append("\nDuring or because of the error above, another one happened:\n\n")
        frames = traceback.extract_tb(e.__traceback__)  # FrameSummary without locals
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(frames))
        message = scrubbed_message(e, mask)
        parts.append(f"{type(e).__module__}.{type(e).__qualname__}: {message}\n")
    return "".join(parts)


def write_crash_log(
    exc: BaseException, folder: Path | None, mask: Callable[[str], str] | None = None
) -> Path:
    """Write the traceback of an unexpected error to <folder>/errors/<UTC time>.log (or a
    temp folder when there is no run folder), messages scrubbed and passed through `mask`;
    returns the file. Mode 600: it names paths."""
    base = folder / "errors" if folder is not None else Path(tempfile.gettempdir()) / "verticalize"
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = base / f"{stamp}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"verticalize {' '.join(sys.argv[1:2])} failed at {stamp}\n\n")
        fh.write(crash_traceback(exc, mask))
    return path


def crash_line(exc: BaseException, log: Path) -> str:
    """One line for the terminal: the error's type and where it was raised, and the log."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" in {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return (
        f"internal error: {type(exc).__name__}{where}. The full traceback (without data) is "
        f"in {log}; please attach it to a bug report."
    )
