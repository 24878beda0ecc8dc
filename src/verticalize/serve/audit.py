"""Audit log (S4): one line per call in the W3C extended log file format
(https://www.w3.org/TR/WD-logfile.html), append-only, rotated by size.

A file starts with directives, then one space-separated line per request; '-' marks an empty
field. Values are encoded like IIS logs: a space becomes '+', and '+', '%', '-'-only values,
control and non-ASCII characters are %-escaped, so `parse_audit` gives back exactly what
was written. The API key itself is never logged, only its id.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote_plus

from verticalize.errors import ServeError
from verticalize.serve.security import mask_for_log

__all__ = ["FIELDS", "AuditLog", "parse_audit"]

FIELDS = (
    "date",
    "time",
    "x-request-id",
    "c-ip",
    "x-key-id",
    "cs(User-Agent)",
    "cs-method",
    "cs-uri-stem",
    "sc-status",
    "time-taken",
    "x-model-version",
)
# client-supplied free text: masked for PII before it is written
_MASKED = ("x-request-id", "cs(User-Agent)", "cs-uri-stem")
_SAFE = re.compile(r"[!-~]")  # printable ASCII without space


def _encode(value: object) -> str:
    text = "" if value is None else str(value)
    if text == "":
        return "-"
    if text == "-":
        return "%2D"
    out = []
    for ch in text:
        if ch == " ":
            out.append("+")
        elif ch in "+%" or not _SAFE.match(ch):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out)


def _decode(token: str) -> str:
    return "" if token == "-" else unquote_plus(token)


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class AuditLog:
    """Append-only W3C audit log at `path`; when a line would take the file past
    `rotate_bytes`, path → path.1 → … → path.<backups> (the oldest is dropped) and a new file
    starts with the directives. Client-supplied fields go through `mask` (PII masking) when
    `mask_pii`. Thread-safe; each line is flushed as it is written."""

    def __init__(
        self,
        path: Path | str,
        rotate_bytes: int,
        backups: int,
        mask_pii: bool = True,
        mask: Callable[[str], str] = mask_for_log,
    ):
        if rotate_bytes < 1 or backups < 1:
            raise ServeError(
                f"audit log {path}: rotate_bytes={rotate_bytes}, backups={backups}; both must be "
                ">= 1. Fix: set serve.audit_rotate_bytes and serve.audit_backups"
            )
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.backups = backups
        self.mask_pii, self.mask = mask_pii, mask
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self._open()

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fh = os.fdopen(fd, "a", encoding="ascii", newline="\n")
        size = self.path.stat().st_size
        if size and not _ends_with_newline(self.path):  # a line torn by a crash stays alone
            fh.write("\n")
        # directives again on every open: they mark the restart and state the fields in use
        directives = self._directives()
        fh.write(directives)
        fh.flush()
        self._size = self.path.stat().st_size  # lines are ASCII: characters == bytes
        self._requests = self._size > len(directives)  # an older run's lines are in it
        return fh

    @staticmethod
    def _directives() -> str:
        from verticalize.version import __version__

        start = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return (
            "#Version: 1.0\n"
            f"#Software: verticalize {__version__}\n"
            f"#Start-Date: {start}\n"
            f"#Fields: {' '.join(FIELDS)}\n"
        )

    def write(
        self,
        request_id: str,
        client_ip: str | None,
        key_id: str | None,
        user_agent: str | None,
        method: str,
        route: str,
        status: int,
        latency_s: float,
        model_version: str | None,
        when: datetime | None = None,
    ) -> None:
        """Append one request's line (date/time in UTC, time-taken in seconds, 3 decimals)."""
        at = _utc(when)
        values = {
            "date": at.strftime("%Y-%m-%d"),
            "time": at.strftime("%H:%M:%S"),
            "x-request-id": request_id,
            "c-ip": client_ip,
            "x-key-id": key_id,
            "cs(User-Agent)": user_agent,
            "cs-method": method,
            "cs-uri-stem": route,
            "sc-status": int(status),
            "time-taken": f"{max(float(latency_s), 0.0):.3f}",
            "x-model-version": model_version,
        }
        if self.mask_pii:
            for name in _MASKED:
                if values[name]:
                    values[name] = self.mask(str(values[name]))
        line = " ".join(_encode(values[name]) for name in FIELDS) + "\n"
        with self._lock:
            # a file holding only directives is never rotated, even for an oversized line
            if self._requests and self._size + len(line) > self.rotate_bytes:
                self._rotate()
            self._fh.write(line)
            self._fh.flush()
            self._size += len(line)
            self._requests = True

    def _rotate(self) -> None:
        self._fh.close()
        oldest = self._backup(self.backups)
        oldest.unlink(missing_ok=True)
        for i in range(self.backups - 1, 0, -1):
            if self._backup(i).exists():
                os.replace(self._backup(i), self._backup(i + 1))
        os.replace(self.path, self._backup(1))
        self._fh = self._open()

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def parse_audit(path: Path | str, include_backups: bool = False) -> list[dict]:
    """The request lines of an audit log as {field: value} dicts (strings; '' for '-'), in
    file order; with `include_backups`, the rotated files first, oldest first. A line whose
    field count does not match its #Fields directive raises ServeError naming file:line."""
    path = Path(path)
    files = [path]
    if include_backups:
        backups = sorted(
            (p for p in path.parent.glob(f"{path.name}.*") if p.suffix[1:].isdigit()),
            key=lambda p: int(p.suffix[1:]),
        )
        files = [*reversed(backups), path]
    rows: list[dict] = []
    for file in files:
        fields: list[str] = list(FIELDS)
        for n, line in enumerate(file.read_text(encoding="ascii").splitlines(), start=1):
            if not line.strip():
                continue
            if line.startswith("#"):
                name, _, value = line[1:].partition(":")
                if name == "Fields":
                    fields = value.split()
                continue
            tokens = line.split()
            if len(tokens) != len(fields):
                raise ServeError(
                    f"{file}:{n}: {len(tokens)} values for {len(fields)} #Fields; the line was "
                    "changed or cut. Fix: restore the file from a backup; audit logs are "
                    "append-only."
                )
            rows.append({f: _decode(t) for f, t in zip(fields, tokens, strict=True)})
    return rows
