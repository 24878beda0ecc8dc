"""User feedback (S8): remember recent answers, classify ratings and corrections as
"wrong" / "slow" / "other", keep them PII-masked (serve/privacy.py) as fsync'd JSONL, and
turn corrections into training records a `verticalize.yaml` data source reads (T6).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

from verticalize.config import PiiConfig
from verticalize.data.conversations import ConversationError, check
from verticalize.errors import ServeError
from verticalize.plugins import get_task, task_names
from verticalize.serve.privacy import FeedbackMasker

__all__ = [
    "FEEDBACK_FILE",
    "VAULT_FILE",
    "FeedbackStore",
    "RecentRequests",
    "classify_feedback",
    "export_corrections",
    "export_feedback",
    "read_feedback",
]

FEEDBACK_FILE = "feedback.jsonl"
VAULT_FILE = "pii_vault.jsonl"  # action pseudonym: token → original, AES-256-GCM encrypted
# 不错 / 没错 mean "good" / "right"
_WRONG = re.compile(
    r"\b(?:wrong|incorrect|inaccurate|mistaken?)\b|(?<![不没])错|不对|不准", re.IGNORECASE
)
# 卡 alone also means "card" (银行卡) and 慢性 means "chronic": only the slowness senses count
_SLOW = re.compile(
    r"\bslow|\btime[- ]?outs?\b|\btimed out\b|\blag(?:gy|s)?\b|慢(?!性)|超时|卡顿|卡住|卡死|[很太好真]卡",
    re.IGNORECASE,
)


class RecentRequests:
    """The last `capacity` answers by request id, so feedback can name what it judges.
    A bounded LRU; thread-safe."""

    def __init__(self, capacity: int = 10000):
        self.capacity = max(1, capacity)
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(
        self,
        request_id: str,
        route: str,
        model_version: str,
        task: str,
        input: object,  # the contract's name; shadows the builtin only here
        output: object,
        latency_ms: float,
    ) -> None:
        """Keep one answer; the least recently used one goes when full."""
        item = {
            "request_id": request_id,
            "route": route,
            "model_version": model_version,
            "task": task,
            "input": input,
            "output": output,
            "latency_ms": latency_ms,
        }
        with self._lock:
            self._items[request_id] = item
            self._items.move_to_end(request_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, request_id: str) -> dict | None:
        """A copy of the remembered answer, or None when unknown or evicted."""
        with self._lock:
            item = self._items.get(request_id)
            if item is None:
                return None
            self._items.move_to_end(request_id)
            return dict(item)

    def __len__(self) -> int:
        return len(self._items)


def classify_feedback(
    rating: int | None,
    comment: str | None,
    correction: object,
    prediction: object,
    latency_ms: float | None,
    slow_ms: float,
) -> str:
    """'wrong' when a correction differs from the prediction, or a rating <= 2 comes with a
    comment saying wrong / incorrect / 错 / 不对 / 不准; else 'slow' when the answer took more
    than `slow_ms` or the comment says slow / timeout / 慢 / 卡顿; else 'other'."""
    comment = comment or ""
    if correction is not None and _comparable(correction) != _comparable(prediction):
        return "wrong"
    if rating is not None and rating <= 2 and _WRONG.search(comment):
        return "wrong"
    if (latency_ms is not None and latency_ms > slow_ms) or _SLOW.search(comment):
        return "slow"
    return "other"


def _comparable(value: object) -> object:
    """One shape for a prediction and its correction: a label, a text, or a span set."""
    if isinstance(value, dict):
        if "choices" in value and value["choices"]:  # an OpenAI completion response
            choice = value["choices"][0]
            value = (choice.get("message") or {}).get("content", choice.get("text"))
        elif "label" in value and "start" not in value:
            value = value["label"]
        else:
            for key in ("entities", "spans", "content", "text"):
                if key in value:
                    value = value[key]
                    break
    if isinstance(value, list) and len(value) == 1:
        only = value[0]
        if (
            isinstance(only, str)
            or (isinstance(only, dict) and "start" not in only)
            or (isinstance(only, list) and _span(only) is None)
        ):
            return _comparable(only)  # one text's answer in a batch of one
    if isinstance(value, list):
        spans = [_span(s) for s in value]
        if all(s is not None for s in spans):
            return sorted(spans)
    return value.strip() if isinstance(value, str) else value


def _span(value: object) -> tuple[int, int, str] | None:
    if isinstance(value, dict):
        label = value.get("label", value.get("entity_group", value.get("type")))
        start, end = value.get("start"), value.get("end")
    elif isinstance(value, list | tuple) and len(value) >= 3:
        start, end, label = value[0], value[1], value[2]
    else:
        return None
    if not (isinstance(start, int) and isinstance(end, int) and isinstance(label, str)):
        return None
    return start, end, label


class FeedbackStore:
    """Appends feedback records to folder/feedback.jsonl (mode 0600), each written and
    fsync'd before `record` returns. Texts are PII-masked first by `masker` (default: the
    default data.pii settings); pseudonyms' encrypted originals go to folder/pii_vault.jsonl.
    Thread-safe."""

    def __init__(
        self, folder: Path | str, slow_ms: float = 200.0, masker: FeedbackMasker | None = None
    ):
        self.folder = Path(folder)
        self.path = self.folder / FEEDBACK_FILE
        self.slow_ms = slow_ms
        self.masker = masker or FeedbackMasker(PiiConfig())
        self._lock = threading.Lock()

    def record(self, feedback: dict) -> dict:
        """Store `feedback`, PII-masked, with an `id` (uuid4 hex), `time` (UTC ISO 8601) and
        `kind` (kept when given, else classify_feedback on its rating, comment, correction,
        prediction and latency_ms, before masking); returns the stored record."""
        kind = feedback.get("kind") or classify_feedback(
            feedback.get("rating"),
            feedback.get("comment"),
            feedback.get("correction"),
            feedback.get("prediction"),
            feedback.get("latency_ms"),
            self.slow_ms,
        )
        masked, vault = self.masker.mask(feedback)
        stored = {
            **masked,
            "id": uuid.uuid4().hex,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "kind": kind,
        }
        line = json.dumps(stored, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            if vault:  # before the record: a token on disk always has its original
                _append(
                    self.folder / VAULT_FILE, "".join(_vault_line(t, v) for t, v in vault.items())
                )
            _append(self.path, line)
        return stored


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _vault_line(token: str, sealed: bytes) -> str:
    """One line as crypto.write_vault writes it, so crypto.read_vault reads the file."""
    return json.dumps({"token": token, "value": base64.b64encode(sealed).decode("ascii")}) + "\n"


def read_feedback(folder: Path | str) -> list[tuple[int, dict | None, str | None]]:
    """(line, record, None) or (line, None, reason) for every line of folder/feedback.jsonl."""
    path = Path(folder) / FEEDBACK_FILE
    if not path.exists():
        raise ServeError(
            f"{path}: no feedback recorded. Fix: point at the serve feedback folder "
            "(serve.feedback_dir, default <run>/serve/feedback) of a service that got feedback."
        )
    out: list[tuple[int, dict | None, str | None]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:  # a line cut by a crash
            out.append((n, None, f"bad_json: {e.msg}"))
            continue
        out.append(
            (n, rec, None) if isinstance(rec, dict) else (n, None, "bad_json: not an object")
        )
    return out


def export_corrections(folder: Path | str, out: Path | str, task: str) -> int:
    """Write every feedback correction in folder/feedback.jsonl as a training record to the
    JSONL file `out`; return how many were written. Corrections that do not fit `task` are
    written with their reason to out.with_suffix('.skipped.jsonl')."""
    return export_feedback(folder, out, task)["exported"]


def export_feedback(folder: Path | str, out: Path | str, task: str) -> dict:
    """Like export_corrections, returning {"exported", "skipped", "reasons": {reason: n},
    "out", "skipped_file"}. Training records (fields `verticalize data` reads):
    classification {"text", "label"}; ner {"text", "spans": [[start, end, TAG], …]};
    generation {"messages": [… user turn(s), {"role": "assistant", "content": correction}]}
    (source `chat: messages`); each also has source "feedback", feedback_id, model_version."""
    takers = [n for n in task_names() if get_task(n).feedback_record is not None]
    if task not in takers:
        raise ServeError(f"task {task!r}: use one of {sorted(takers)}")
    build = get_task(task).feedback_record
    out = Path(out)
    made, skipped = [], []
    for line, rec, error in read_feedback(folder):
        if rec is None:
            skipped.append({"line": line, "reason": error})
            continue
        if rec.get("correction") is None:
            continue
        if rec.get("task") not in (None, task):
            reason = f"task_mismatch: feedback is for {rec['task']}, export is for {task}"
        else:
            built, reason = build(rec)
            if built is not None:
                made.append(
                    built
                    | {
                        "source": "feedback",
                        "feedback_id": rec.get("id"),
                        "model_version": rec.get("model_version"),
                    }
                )
                continue
        skipped.append({**rec, "line": line, "feedback_id": rec.get("id"), "reason": reason})
    skipped_file = out.with_suffix(".skipped.jsonl")
    _write_jsonl(out, made)
    if skipped:
        _write_jsonl(skipped_file, skipped)
    else:
        skipped_file.unlink(missing_ok=True)  # a stale list from an earlier export would mislead
    reasons: dict[str, int] = {}
    for s in skipped:
        key = s["reason"].partition(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    return {
        "exported": len(made),
        "skipped": len(skipped),
        "reasons": reasons,
        "out": str(out),
        "skipped_file": str(skipped_file) if skipped else None,
    }


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds user input
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)  # a reader never sees half an export


def _input_text(rec: dict) -> tuple[str | None, str | None]:
    """The one text the feedback is about: `input`, or input[index] for a batch request."""
    value = rec.get("input")
    if isinstance(value, dict):
        value = value.get("text", value.get("input", value.get("prompt")))
    if isinstance(value, list):
        index = rec.get("index")
        if index is None and len(value) == 1:  # the service stores "index": null for one text
            index = 0
        if not isinstance(index, int) or not 0 <= index < len(value):
            return None, f"ambiguous_input: {len(value)} texts and no valid 'index'"
        value = value[index]
    if not isinstance(value, str) or not value.strip():
        return None, "missing_input: the request's text is not in the feedback record"
    return value, None


def label_record(rec: dict) -> tuple[dict | None, str | None]:
    text, reason = _input_text(rec)
    if text is None:
        return None, reason
    label = rec["correction"]
    if isinstance(label, dict):
        label = label.get("label")
    if not isinstance(label, str) or not label.strip():
        return None, f"bad_correction: a classification correction is a label, got {label!r}"
    return {"text": text, "label": label.strip()}, None


def spans_record(rec: dict) -> tuple[dict | None, str | None]:
    text, reason = _input_text(rec)
    if text is None:
        return None, reason
    value = rec["correction"]
    if isinstance(value, dict):
        value = value.get("entities", value.get("spans"))
    if not isinstance(value, list):
        return None, f"bad_correction: a ner correction is a list of spans, got {value!r}"
    spans = []
    for item in value:
        span = _span(item)
        if span is None or not 0 <= span[0] < span[1] <= len(text):
            return None, (
                f"bad_correction: {item!r} is not a span {{start, end, label}} inside the "
                f"text of {len(text)} characters"
            )
        if isinstance(item, dict) and "text" in item and item["text"] != text[span[0] : span[1]]:
            return None, f"bad_correction: span {item!r} does not cover its 'text'"
        spans.append(list(span))
    return {"text": text, "spans": sorted(spans)}, None


def conversation_record(rec: dict) -> tuple[dict | None, str | None]:
    answer = rec["correction"]
    if isinstance(answer, dict):
        answer = answer.get("content", answer.get("text"))
    if not isinstance(answer, str) or not answer.strip():
        return None, f"bad_correction: a generation correction is the better answer, got {answer!r}"
    value = rec.get("input")
    if isinstance(value, dict) and "messages" in value:
        value = value["messages"]
    if isinstance(value, str):
        messages = [{"role": "user", "content": value}]
    elif isinstance(value, list) and all(isinstance(m, dict) for m in value):
        messages = [{"role": m.get("role"), "content": m.get("content")} for m in value]
    else:
        return None, "missing_input: the request's prompt or messages are not in the record"
    messages.append({"role": "assistant", "content": answer.strip()})
    try:
        check(messages)
    except (ConversationError, AttributeError, TypeError) as e:
        return None, f"bad_conversation: {e}"
    return {"messages": messages}, None
