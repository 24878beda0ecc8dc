"""Accounting for one data step: records in, out, and dropped with a reason (D10)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import IO


@dataclass
class StepTally:
    step: str
    n_in: int = 0
    n_out: int = 0
    dropped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        assert self.n_in == self.n_out + sum(self.dropped.values()), self
        return {
            "step": self.step,
            "in": self.n_in,
            "out": self.n_out,
            "dropped": dict(self.dropped),
        }


class Quarantine:
    """Appends every dropped record to quarantine.jsonl with the step, rule and field."""

    def __init__(self, fh: IO[str]):
        self.fh = fh
        self.count = 0

    def put(self, tally: StepTally, reason: str, record: dict | None, **detail) -> None:
        tally.dropped[reason] += 1
        self.count += 1
        row = {"step": tally.step, "reason": reason, **detail, "record": record}
        self.fh.write(json.dumps(row, ensure_ascii=False) + "\n")
