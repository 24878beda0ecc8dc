"""Normalization (D3): HTML remnants, NFKC (full → half width), control characters,
whitespace, optional traditional → simplified Chinese and number normalization, and
boilerplate lines shared by many documents; records left too short or too long are dropped
with the reason.

Line breaks survive normalization because boilerplate is found line by line. Records with
character spans get only offset-preserving changes, so their spans stay valid.
"""

from __future__ import annotations

import hashlib
import html
import re
import sys
import unicodedata
from collections import Counter
from functools import cache, lru_cache

from verticalize.config import BoilerplateConfig, CleanConfig
from verticalize.data.manifest import Quarantine, StepTally
from verticalize.data.numbers import chinese_numbers_to_digits, drop_thousands_separators

_TAG = re.compile(r"<[^>]{1,200}>")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_BREAKS = re.compile(r" ?\n\s*")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def normalize_text(text: str, cfg: CleanConfig) -> str:
    """Clean text for training: HTML entities and tags, NFKC, control characters → space,
    spaces collapsed within lines, lines stripped, empty lines dropped, lines joined by '\\n';
    then the optional steps `cfg` turns on (t2s, numbers, lowercase)."""
    if cfg.html:
        for _ in range(2):  # doubly-escaped text (&amp;#039;) is common in scraped exports
            text = html.unescape(text)
        text = _TAG.sub(" ", text)
    if cfg.numbers:  # before NFKC, which turns the Chinese list comma '，' into ','
        text = drop_thousands_separators(text)
    if cfg.nfkc:
        text = unicodedata.normalize("NFKC", text)
    text = _LINE_BREAK.sub("\n", text)
    text = _control_chars().sub(" ", text)
    # undecodable bytes (surrogateescape) cannot be written as UTF-8
    text = _SURROGATE.sub("\ufffd", text)
    if cfg.traditional_to_simplified:
        text = _t2s().convert(text)
    if cfg.numbers:
        text = chinese_numbers_to_digits(text)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_BREAKS.sub("\n", text).strip()  # strips lines, drops empty ones
    if cfg.html:  # CSV exports often wrap reviews in literal quotes: """text"""
        text = text.strip('"').strip()
    if cfg.lowercase:
        text = text.lower()
    return text


def normalize_spans_text(text: str, cfg: CleanConfig) -> str:
    """Offset-preserving normalization: each character is replaced by at most one character
    (NFKC where it yields exactly one, control characters → space), so spans stay valid."""
    if cfg.nfkc and not text.isascii():
        text = "".join(_nfkc_char(c) for c in text)
    text = _control_chars_or_newline().sub(" ", text)
    return _SURROGATE.sub("\ufffd", text)


def normalize_record(record: dict, cfg: CleanConfig) -> dict:
    """A copy of `record` with normalized text: offset-preserving when it has "spans",
    per message for a conversation, the full `normalize_text` otherwise."""
    if record.get("spans") is not None:
        return {**record, "text": normalize_spans_text(record["text"], cfg)}
    if record.get("messages") is not None:
        from verticalize.data.conversations import conversation_text

        messages = [{**m, "content": normalize_text(m["content"], cfg)} for m in record["messages"]]
        return {**record, "messages": messages, "text": conversation_text(messages)}
    return {**record, "text": normalize_text(record["text"], cfg)}


class BoilerplateDetector:
    """Finds lines repeated across many documents (headers, footers, disclaimers).

    `observe` each document once, `finish` once, then `strip` documents. Only 8-byte hashes
    of lines are kept; when more than `max_tracked` are held, those seen in the fewest
    documents are forgotten, so rare lines may be undercounted but memory stays bounded.
    """

    def __init__(self, cfg: BoilerplateConfig, max_tracked: int = 2_000_000):
        self.cfg = cfg
        self.max_tracked = max_tracked
        self.n_docs = 0
        self._counts: Counter[int] = Counter()
        self._boilerplate: set[int] | None = None

    def observe(self, text: str) -> None:
        """Count each distinct line of one document once."""
        self.n_docs += 1
        self._counts.update(self._line_hashes(text))
        if len(self._counts) > self.max_tracked:
            self._forget_rare()

    def finish(self, n_docs: int | None = None) -> set[int]:
        """Hashes of the boilerplate lines: in at least `min_docs` documents and at least
        `min_share` of `n_docs` (default: the documents observed)."""
        n_docs = self.n_docs if n_docs is None else n_docs
        need = max(self.cfg.min_docs, self.cfg.min_share * n_docs)
        self._boilerplate = {h for h, n in self._counts.items() if n >= need}
        self._counts = Counter()  # the counts are no longer needed; free them
        return self._boilerplate

    def strip(self, text: str) -> tuple[str, int]:
        """`text` without its boilerplate lines, and how many lines were removed."""
        if self._boilerplate is None:
            raise RuntimeError("BoilerplateDetector.strip called before finish")
        if not self._boilerplate:
            return text, 0
        kept = [line for line in text.split("\n") if self._hash(line) not in self._boilerplate]
        removed = text.count("\n") + 1 - len(kept)
        return "\n".join(kept), removed

    def _line_hashes(self, text: str) -> set[int]:
        limit = self.cfg.max_line_chars
        return {self._hash(line) for line in text.split("\n") if 0 < len(line.strip()) <= limit}

    @staticmethod
    def _hash(line: str) -> int:
        key = " ".join(line.split()).casefold().encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")

    def _forget_rare(self) -> None:
        floor = 1
        while len(self._counts) > self.max_tracked // 2:
            self._counts = Counter({h: n for h, n in self._counts.items() if n > floor})
            floor += 1


def length_problem(text: str, cfg: CleanConfig) -> str | None:
    """'too_short' / 'too_long' when the cleaned text is outside [min_chars, max_chars]."""
    if len(text) < max(cfg.min_chars, 1):
        return "too_short"
    if cfg.max_chars is not None and len(text) > cfg.max_chars:
        return "too_long"
    return None


def clean(
    records: list[dict], cfg: CleanConfig, quarantine: Quarantine
) -> tuple[list[dict], StepTally]:
    """Normalize every record, strip boilerplate lines when enabled (not from records with
    spans), and quarantine those left shorter than `min_chars` or longer than `max_chars`."""
    tally = StepTally("clean")
    normalized = [normalize_record(rec, cfg) for rec in records]
    detector = None
    if cfg.boilerplate.enabled:
        detector = BoilerplateDetector(cfg.boilerplate)
        for rec in normalized:
            if rec.get("spans") is None:
                detector.observe(rec["text"])
        detector.finish()
    out = []
    for rec, cleaned in zip(records, normalized, strict=True):
        tally.n_in += 1
        if detector is not None and cleaned.get("spans") is None:
            cleaned["text"], _ = detector.strip(cleaned["text"])
        problem = length_problem(cleaned["text"], cfg)
        if problem:
            quarantine.put(tally, problem, rec, field="text", value=len(cleaned["text"]))
        else:
            out.append(cleaned)
            tally.n_out += 1
    return out, tally


@cache
def _control_chars() -> re.Pattern:
    """Every control, format and line/paragraph separator character except '\\n'."""
    return re.compile(_category_class(("Cc", "Cf", "Zl", "Zp"), keep="\n"))


@cache
def _control_chars_or_newline() -> re.Pattern:
    return re.compile(_category_class(("Cc", "Cf", "Zl", "Zp"), keep=""))


def _category_class(categories: tuple[str, ...], keep: str) -> str:
    ranges: list[str] = []
    start = prev = None
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        hit = c not in keep and unicodedata.category(c) in categories
        if hit and start is None:
            start = cp
        if not hit and start is not None:
            ranges.append(_range(start, prev))
            start = None
        prev = cp
    if start is not None:
        ranges.append(_range(start, prev))
    return "[" + "".join(ranges) + "]"


def _range(first: int, last: int) -> str:
    lo, hi = re.escape(chr(first)), re.escape(chr(last))
    return lo if first == last else f"{lo}-{hi}"


@lru_cache(maxsize=65536)
def _nfkc_char(c: str) -> str:
    n = unicodedata.normalize("NFKC", c)
    return n if len(n) == 1 else c


@cache
def _t2s():
    """One OpenCC converter per process: building it loads its dictionaries."""
    import opencc

    return opencc.OpenCC("t2s")
