"""The per-record steps of the data stage — rules → clean → desensitize → segment →
near-dup signature — as one picklable callable, so the same code runs in-process or on Ray
workers (`data.engine`). Each call returns the processed record or why it was dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

from verticalize.config import DataConfig
from verticalize.data.dedup import text_key

# the per-record steps in order; the stage tallies in / out / dropped for each
STEPS = ("rules", "clean", "pii", "segment")


@dataclass
class Outcome:
    record: dict  # the processed record, or (for a drop) the record as far as it got, PII-masked
    dropped: dict | None = None  # {"step", "reason", "field", "value", "detail"}
    signature: object = None  # MinHash signature (numpy array) when near dedup is on
    text_key: str | None = None  # exact-dedup hash, of the text before PII masking
    pii: dict[str, int] = field(default_factory=dict)  # detections by kind
    vault: dict[str, bytes] = field(default_factory=dict)  # new pseudonym → encrypted original


class RecordProcessor:
    """Built once per run on the driver; pickled to workers. Heavy helpers (jieba, OpenCC,
    the PII masker) are created lazily in the process that uses them."""

    def __init__(
        self,
        cfg: DataConfig,
        labels: list[str] | None,
        key: bytes | None,
        boilerplate,  # a finished clean.BoilerplateDetector, or None
        user_dicts: list[str],
        stop_words: str | None,
    ):
        self.cfg, self.labels, self.key = cfg, labels, key
        self.boilerplate = boilerplate
        self.user_dicts, self.stop_words = user_dicts, stop_words
        self._rules = self._masker = self._segmenter = None
        self._near_settings = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rules": None, "_masker": None, "_segmenter": None}

    @property
    def rules(self):
        if self._rules is None:
            from verticalize.data.rules import RuleSet

            self._rules = RuleSet(self.cfg.rules, self.labels)
        return self._rules

    @property
    def masker(self):
        if self._masker is None and self.cfg.pii.enabled:
            from verticalize.data.pii import PiiMasker

            self._masker = PiiMasker(self.cfg.pii, self.key)
        return self._masker

    @property
    def segmenter(self):
        if self._segmenter is None and self.cfg.segment.enabled:
            from pathlib import Path

            from verticalize.data.segment import Segmenter

            stop = Path(self.stop_words) if self.stop_words else None
            self._segmenter = Segmenter([Path(p) for p in self.user_dicts], stop)
        return self._segmenter

    def scrub(self, record: dict) -> dict:
        """Every string in the record PII-masked (for quarantine rows); unchanged when off."""
        masker = self.masker
        if masker is None:
            return record
        return map_strings(record, lambda s: masker.apply(s)[0])

    def __call__(self, rec: dict) -> Outcome:
        from verticalize.data.clean import length_problem, normalize_record

        violation = self.rules.check(rec)
        if violation is not None:
            return self._drop(
                rec, "rules", violation.rule, violation.field, violation.value, violation.detail
            )
        rec = normalize_record(rec, self.cfg.clean)
        if self.boilerplate is not None and "spans" not in rec and "messages" not in rec:
            rec["text"], _ = self.boilerplate.strip(rec["text"])
        problem = length_problem(rec["text"], self.cfg.clean)
        if problem:
            why = "characters after cleaning; bounds: data.clean.min_chars / max_chars"
            return self._drop(rec, "clean", problem, "text", len(rec["text"]), why)
        out = Outcome(rec, text_key=text_key(rec["text"]))
        if self.cfg.dedup.near.enabled:  # before masking: masks must not make texts look alike
            from verticalize.data.near_dedup import configured, signature

            near = self.cfg.dedup.near
            if self._near_settings is None:  # once per processor, not per record
                self._near_settings = configured(near)
            out.signature = signature(rec["text"], self._near_settings, near.num_perm)
        if self.masker is not None:
            before = set(self.masker.vault)
            rec = self.masker.apply_to_record(rec, self.cfg.pii.fields)
            out.record = rec
            out.pii = dict(self.masker.counts)
            self.masker.counts.clear()
            out.vault = {t: v for t, v in self.masker.vault.items() if t not in before}
        if self.segmenter is not None:
            rec["tokens"] = self.segmenter.cut(rec["text"])
        return out

    def _drop(self, rec, step, reason, field_, value, detail) -> Outcome:
        if isinstance(value, str):
            value = self.scrub({"v": value})["v"][:200]
        drop = {"step": step, "reason": reason, "field": field_, "value": value, "detail": detail}
        return Outcome(self.scrub(rec), drop)


def map_strings(value, fn):
    """`value` with `fn` applied to every string inside it (dicts and lists walked)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    return value
