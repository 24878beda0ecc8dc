"""Metric logs (T5): metrics.jsonl and metrics.csv in train/, TensorBoard events in train/tb/."""

from __future__ import annotations

import csv
import json
from pathlib import Path


class MetricsLog:
    def __init__(
        self,
        out_dir: Path,
        tensorboard: bool,
        resume_step: int | None,
        tracker=None,
        label: str = "train",
        write: bool = True,
    ):
        self.write = write  # False on every rank but 0 of a distributed run: nothing written
        self.jsonl = out_dir / "metrics.jsonl"
        self.csv = out_dir / "metrics.csv"
        rows = []
        self.tracker, self.label, self.tb = tracker, label, None
        if not write:
            self.rows = rows
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.jsonl.is_file():  # drop rows past the checkpoint
            rows = [json.loads(x) for x in self.jsonl.read_text(encoding="utf-8").splitlines() if x]
            rows = [r for r in rows if r["step"] <= resume_step]
        self.rows = rows
        with open(self.jsonl, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=resume_step)

    def log(self, row: dict) -> None:
        if not self.write:
            return
        self.rows.append(row)
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tracker is not None:
            self.tracker.log_row(row, self.label)
        if self.tb is not None:
            prefix = "val" if row.get("event") == "eval" else "train"
            for key, value in row.items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{key}", value, row["step"])

    def write_csv(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        with open(self.csv, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def close(self) -> None:
        if not self.write:
            return
        self.write_csv()
        if self.tb is not None:
            self.tb.close()
