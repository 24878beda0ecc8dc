"""Basic normalization (D3): HTML remnants, NFKC (full → half width), control characters,
whitespace; records left too short or too long are dropped with the reason."""

from __future__ import annotations

import html
import re
import unicodedata

from verticalize.config import CleanConfig
from verticalize.data.manifest import Quarantine, StepTally

_TAG = re.compile(r"<[^>]{1,200}>")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str, cfg: CleanConfig) -> str:
    if cfg.html:
        for _ in range(2):  # doubly-escaped text (&amp;#039;) is common in scraped exports
            text = html.unescape(text)
        text = _TAG.sub(" ", text)
    if cfg.nfkc:
        text = unicodedata.normalize("NFKC", text)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    text = _SPACE.sub(" ", text).strip()
    if cfg.html:  # CSV exports often wrap reviews in literal quotes: """text"""
        text = text.strip('"').strip()
    if cfg.lowercase:
        text = text.lower()
    return text


def clean(records: list[dict], cfg: CleanConfig, quarantine: Quarantine):
    tally = StepTally("clean")
    out = []
    for rec in records:
        tally.n_in += 1
        text = normalize_text(rec["text"], cfg)
        if len(text) < max(cfg.min_chars, 1):
            quarantine.put(tally, "too_short", rec, field="text", value=text)
        elif cfg.max_chars is not None and len(text) > cfg.max_chars:
            quarantine.put(tally, "too_long", rec, field="text", value=len(text))
        else:
            out.append({**rec, "text": text})
            tally.n_out += 1
    return out, tally
