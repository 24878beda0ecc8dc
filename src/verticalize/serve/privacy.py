"""Privacy at rest for the service: what it writes keeps no raw personal data.

Feedback records are masked with the data stage's own PII detector and `data.pii` settings
(kinds, custom kinds, action) when `verticalize serve` is given the project's YAML, else
with the default `data.pii` settings. Log lines (audit, the service's own logger) are masked
for every built-in kind plus the custom ones, and a logged traceback carries neither local
variables nor quoted values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from verticalize.config import Config, PiiConfig
from verticalize.data.pii import PiiMasker, moved_offset, resolve_pii_paths
from verticalize.errors import crash_traceback
from verticalize.serve.security import mask_for_log

__all__ = [
    "PII_FREE",
    "FeedbackMasker",
    "MaskingLogFilter",
    "feedback_masker",
    "mask_service_logs",
]

log = logging.getLogger("verticalize.serve")
DEFAULT_SETTINGS = "the default data.pii settings"
# the loggers whose records may carry what a client sent
SERVICE_LOGGERS = ("verticalize.serve", "uvicorn.error")
# log(..., extra={PII_FREE: True}) marks a line that holds no user input (the bound address)
PII_FREE = "pii_free"

Edits = list[tuple[int, int, int]]
Text = tuple[str, str, Edits]  # (original, masked, edits from one to the other)


class FeedbackMasker:
    """Replaces the PII in a feedback record's texts per `cfg` (data.pii; custom dictionary
    paths absolute, see resolve_pii_paths); `key` is data.key_file's key for hash and
    pseudonym; `settings` says where `cfg` came from. Thread-safe."""

    def __init__(self, cfg: PiiConfig, key: bytes | None = None, settings: str = DEFAULT_SETTINGS):
        self.cfg, self.settings = cfg, settings
        self._masker = PiiMasker(cfg, key)
        self._lock = threading.Lock()
        self._kept: set[str] = set()

    def mask(self, record: dict) -> tuple[dict, dict[str, bytes]]:
        """(a copy of `record` whose input, prediction, correction and comment hold no
        detected PII, the pseudonym vault entries made since the last call). Entity offsets
        in predictions and corrections follow their text, and a span's `text` is its slice
        of the masked text, so `verticalize feedback export` still checks out."""
        with self._lock:
            out = self._record(record)
            vault = {t: v for t, v in self._masker.vault.items() if t not in self._kept}
            self._kept.update(vault)
        return out, vault

    def mask_log_text(self, text: str) -> str:
        """`text` masked for a log line: every built-in kind and the custom kinds."""
        return mask_for_log(text, self._masker.custom)

    def _record(self, record: dict) -> dict:
        out = dict(record)
        value = record.get("input")
        texts: list[Text] | None = None
        if isinstance(value, str):
            texts = [self._text(value)]
            out["input"] = texts[0][1]
        elif isinstance(value, list) and value and all(isinstance(t, str) for t in value):
            texts = [self._text(t) for t in value]
            out["input"] = [t[1] for t in texts]
        elif "input" in record:
            out["input"] = self._json(value)  # chat messages, a dict …: every string masked
        index = record.get("index")
        subject = None  # the one text a correction is about
        if texts and len(texts) == 1:
            subject = texts[0]
        elif texts and isinstance(index, int) and 0 <= index < len(texts):
            subject = texts[index]
        for name in ("prediction", "correction"):
            if name in record:
                out[name] = self._answer(record[name], subject, texts)
        if "comment" in record:
            out["comment"] = self._json(record["comment"])
        return out

    def _text(self, text: str) -> Text:
        new, edits = self._masker.apply_with_edits(text)
        return text, new, edits

    def _json(self, value: object) -> object:
        if isinstance(value, str):
            return self._masker.apply(value)[0]
        if isinstance(value, list):
            return [self._json(v) for v in value]
        if isinstance(value, dict):
            return {self._json(k): self._json(v) for k, v in value.items()}
        return value

    def _answer(self, value: object, subject: Text | None, texts: list[Text] | None) -> object:
        """A prediction or correction; spans in it move with the text they point into."""
        if isinstance(value, dict):
            key = next((k for k in ("entities", "spans") if isinstance(value.get(k), list)), None)
            if key is None:
                return self._json(value)
            return {
                self._json(k): self._answer(v, subject, texts) if k == key else self._json(v)
                for k, v in value.items()
            }
        if isinstance(value, list) and value:
            if subject and all(_offsets(v, subject[0]) for v in value):
                return [self._span(v, subject) for v in value]
            batch = texts and len(value) == len(texts)
            if batch and all(isinstance(v, list | dict) for v in value):
                return [self._answer(v, t, None) for v, t in zip(value, texts, strict=True)]
        return self._json(value)

    def _span(self, span: dict | list, text: Text) -> dict | list:
        old, new, edits = text
        start, end = _offsets(span, old)
        moved = moved_offset(start, edits, end=False), moved_offset(end, edits, end=True)
        if isinstance(span, list):
            return [*moved, *self._json(span[2:])]
        out = self._json(span)
        out["start"], out["end"] = moved
        if span.get("text") == old[start:end]:  # the slice it names: keep them equal
            out["text"] = new[moved[0] : moved[1]]
        return out


def _offsets(span: object, text: str) -> tuple[int, int] | None:
    """(start, end) of a span {start, end, …} or [start, end, …] inside `text`, else None."""
    if isinstance(span, dict):
        start, end = span.get("start"), span.get("end")
    elif isinstance(span, list) and len(span) >= 2:
        start, end = span[0], span[1]
    else:
        return None
    ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end))
    return (start, end) if ints and 0 <= start <= end <= len(text) else None


def feedback_masker(project: Config | None, run_dir: Path | None = None) -> FeedbackMasker:
    """The masker for the service's feedback: `project`'s data.pii (custom dictionaries read
    relative to its YAML, data.key_file's key for hash and pseudonym), else the default
    data.pii settings. Pseudonyms need the key: without it the action falls back to mask.
    Says which settings it took in a log line."""
    if project is None:
        masker = FeedbackMasker(PiiConfig())
        log.warning(
            "feedback: PII is masked with %s (no project YAML given: `verticalize serve "
            "<verticalize.yaml>` or --config <verticalize.yaml> applies its data.pii)",
            DEFAULT_SETTINGS,
        )
        return masker
    base = project.source_file.parent if project.source_file else Path.cwd()
    cfg = resolve_pii_paths(project.data.pii, base)
    key = _existing_key(project, base, run_dir) if cfg.action in ("hash", "pseudonym") else None
    if cfg.action == "pseudonym" and key is None:
        log.warning(
            "feedback: data.pii.action is pseudonym but data.key_file holds no key here; "
            "feedback is masked (action mask) instead"
        )
        cfg = cfg.model_copy(update={"action": "mask"})
    settings = f"data.pii of {project.source_file or project.name}"
    masker = FeedbackMasker(cfg, key, settings)
    log.warning("feedback: PII is replaced (action %s) with %s", cfg.action, settings)
    return masker


def _existing_key(project: Config, base: Path, run_dir: Path | None) -> bytes | None:
    """data.key_file's key (the data stage's default path when unset), if it exists: the
    service never creates one, as tokens from a new key would match nothing."""
    from verticalize.data.crypto import load_or_create_key

    d = project.data
    path = Path(d.key_file).expanduser() if d.key_file else None
    if path is None:  # the data stage's default (data/outputs.py)
        path = Path("~/.config/verticalize/keys").expanduser() / f"{project.name}.key"
    elif not path.is_absolute():
        path = base / path
    if not path.is_file():
        return None
    return load_or_create_key(path, run_dir or base / "runs" / project.name).key


class MaskingLogFilter(logging.Filter):
    """Masks PII in a log record's message (`mask`), and replaces its traceback with one that
    holds no local variables and no quoted values (errors.crash_traceback), masked too.
    Records marked PII_FREE pass unchanged."""

    def __init__(self, mask: Callable[[str], str] = mask_for_log):
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, PII_FREE, False):
            return True
        try:
            record.msg, record.args = self.mask(record.getMessage()), None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = crash_traceback(record.exc_info[1], self.mask).rstrip("\n")
                record.exc_info = None
        except Exception:  # a log line must never raise, nor leak what could not be masked
            record.msg, record.args, record.exc_info = "(log line withheld)", None, None
            record.exc_text = None
        return True


def mask_service_logs(mask: Callable[[str], str] = mask_for_log) -> None:
    """Put a MaskingLogFilter(mask) on the service's loggers, replacing an earlier one."""
    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, MaskingLogFilter)]:
            logger.removeFilter(old)
        logger.addFilter(MaskingLogFilter(mask))
