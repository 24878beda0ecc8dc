"""Accounting for one data step: records in, out, added, and dropped with a reason (D10)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO


@dataclass
class StepTally:
    step: str
    n_in: int = 0
    n_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    added: int = 0  # records a step creates (augmentation)

    def as_dict(self) -> dict:
        assert self.n_in + self.added == self.n_out + sum(self.dropped.values()), self
        out = {"step": self.step, "in": self.n_in, "out": self.n_out, "dropped": dict(self.dropped)}
        return out | ({"added": self.added} if self.added else {})


def _safe(value):
    """Undecodable bytes (kept as lone surrogates by the readers) as \\x escapes, so the line
    can be written as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


class Quarantine:
    """Appends every dropped record to quarantine.jsonl with the step, rule and field.

    `scrub` (the PII masker when desensitization is on) is applied to the record and the
    offending value first: quarantine is read by people, so it must not leak personal data.
    """

    def __init__(self, fh: IO[str], scrub: Callable[[dict], dict] | None = None):
        self.fh = fh
        self.count = 0
        self.scrub = scrub

    def put(self, tally: StepTally, reason: str, record: dict | None, **detail) -> None:
        tally.dropped[reason] += 1
        self.write(tally.step, reason, record, **detail)

    def write(self, step: str, reason: str, record: dict | None, **detail) -> None:
        detail.setdefault("rule", reason)
        detail.setdefault("field", None)
        if record is not None:  # every row names where the record came from
            detail.setdefault("source", record.get("source"))
            detail.setdefault("line", record.get("line"))
        if self.scrub is not None:
            record = self.scrub(record) if record is not None else None
            if isinstance(detail.get("value"), str):
                detail["value"] = self.scrub({"text": detail["value"]})["text"]
        self.count += 1
        row = _safe({"step": step, "reason": reason, **detail, "record": record})
        self.fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
