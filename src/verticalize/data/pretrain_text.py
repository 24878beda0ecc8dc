"""Unlabelled `pretrain: true` text of an encoder task (T6): kept out of the labelled
splits (baselines, cross-validation and evaluation read those) and written to
data/pretrain.jsonl for the train stage's masked-LM step.

The records go through the same rules, cleaning, PII masking and segmentation as the
others; here they are deduplicated among themselves, and a record whose normalized text is
that of a validation or test record is dropped: pre-training on it would leak the test.
"""

from __future__ import annotations

import json
from pathlib import Path

from verticalize.config import Config
from verticalize.data.dedup import text_key
from verticalize.data.manifest import Quarantine, StepTally
from verticalize.plugins import get_task

FILE = "pretrain.jsonl"


def pretrain_prefixes(cfg: Config) -> tuple[str, ...]:
    """Id prefixes (`s<index>:`) of the sources whose records are set aside as masked-LM
    text; none for a task that trains on them itself (generation)."""
    if not get_task(cfg.task).masked_lm:
        return ()
    return tuple(f"s{i}:" for i, s in enumerate(cfg.data.sources) if s.pretrain)


class PretrainText:
    """Collects the pretrain records during the record pass and writes the kept ones once
    the split is known."""

    def __init__(self, work: Path, exact: bool):
        self.work_file = work / FILE
        self.exact = exact
        self.seen: dict[str, str] = {}  # text key -> id of the first record with the text
        self.tally = StepTally("pretrain_text")
        self._fh = None

    def offer(self, rec: dict, quarantine: Quarantine) -> None:
        """Keep `rec` for now, unless an earlier pretrain record has its text."""
        self.tally.n_in += 1
        key = text_key(rec["text"])
        if self.exact and key in self.seen:
            first = self.seen[key]
            quarantine.put(
                self.tally,
                "duplicate",
                rec,
                field="text",
                value=first,
                detail=f"an exact copy of pretrain record {first}",
            )
            return
        self.seen.setdefault(key, rec["id"])
        if self._fh is None:
            self._fh = open(self.work_file, "w", encoding="utf-8")
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def write(self, out_dir: Path, held_out: dict[str, tuple[str, str]], quarantine) -> int:
        """Write data/pretrain.jsonl without the records whose text key is in `held_out`
        ({text key: (split, record id)} of the validation and test records); the count."""
        if self._fh is not None:
            self._fh.close()
        written = 0
        with open(out_dir / FILE, "w", encoding="utf-8") as out:
            if not self.work_file.is_file():
                return 0
            with open(self.work_file, encoding="utf-8") as fh:
                for line in fh:
                    rec = json.loads(line)
                    hit = held_out.get(text_key(rec["text"]))
                    if hit is not None:
                        split, rid = hit
                        quarantine.put(
                            self.tally,
                            f"equals_{split}_text",
                            rec,
                            field="text",
                            value=rid,
                            detail=f"the text of {split} record {rid}: pre-training on it "
                            "would leak the evaluation",
                        )
                        continue
                    out.write(line)
                    written += 1
        self.tally.n_out = written
        return written
