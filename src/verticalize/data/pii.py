"""PII desensitization (D5): replace detected PII, keep spans right, check k-anonymity.

Actions (data.pii.action):
- mask: keep a few characters, star the rest (110101********1234, 138****5678, z***@x.com);
- redact: a placeholder naming the kind ([ID_CARD]);
- hash: [ID_CARD:ab12cd34], a keyed SHA-256 prefix: consistent, irreversible;
- pseudonym: <ID_CARD_ab12cd34ef>, an HMAC token; the original is kept AES-256-GCM encrypted
  in a vault so `reidentify` can restore it with the key, and only with the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from verticalize.config import PII_KINDS, PiiConfig
from verticalize.data.crypto import derive_key
from verticalize.data.pii_custom import custom_detectors
from verticalize.data.pii_detect import PiiMatch, detect_pii, normalized_view
from verticalize.errors import ConfigError, DataError

__all__ = [
    "PiiMasker",
    "PiiMatch",
    "detect_pii",
    "k_anonymity",
    "mask_value",
    "moved_offset",
    "reidentify",
    "score_detection",
]

TOKEN = re.compile(r"<([A-Z0-9_]+)_([0-9a-f]{10})>")
_NUMERIC = ("id_card", "mobile", "landline", "bank_card")
# (characters kept at the head, at the tail) among letters and digits; separators stay
_KEEP = {
    "id_card": (6, 4),
    "bank_card": (6, 4),
    "passport": (1, 2),
    "landline": (0, 4),
    "ssn": (0, 4),
    "uscc": (2, 2),
    "plate": (2, 1),
    "hk_id": (1, 1),
    "mo_id": (1, 1),
    "tw_id": (1, 2),
    "cn_address": (3, 0),  # the province or city stays readable, the rest does not
}


def _star(value: str, head: int, tail: int) -> str:
    view = normalized_view(value)
    n = sum(c.isalnum() for c in view)
    out, seen = [], 0
    for ch, v in zip(value, view, strict=True):
        if v.isalnum():
            seen += 1
            out.append(ch if seen <= head or seen > n - tail else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_value(kind: str, value: str) -> str:
    """`value` with its identifying middle starred; the kind stays recognizable."""
    view = normalized_view(value)
    if kind == "email":
        at = view.index("@")
        return value[:1] + "*" * (at - 1) + value[at:]
    if kind == "ipv4":
        dot = view.index(".")
        return value[:dot] + re.sub(r"\d+", "*", value[dot:])
    if kind == "ipv6":
        colon = view.index(":")
        return value[:colon] + re.sub(r"[0-9A-Fa-f.]+", "*", value[colon:])
    if kind == "cn_name":
        return value[:1] + "*" * (len(value) - 1) if len(value) > 1 else "*"
    if kind == "en_name":
        return re.sub(r"(?<=\w)\w", "*", value)
    if kind == "mobile":
        digits = sum(c.isdigit() for c in view)
        return _star(value, digits - 8, 4)  # keep +86 and the carrier prefix
    head, tail = _KEEP.get(kind, (1, 1))
    if kind == "landline":
        head = len(re.search(r"\d+", view).group())  # the area code
    return _star(value, head, tail)


def _canonical(kind: str, value: str) -> str:
    """One spelling per identifier, so 138-1234-5678 and １３８12345678 share a token."""
    view = normalized_view(value)
    if kind in _NUMERIC:
        digits = re.sub(r"[^0-9Xx]", "", view).upper()
        return digits[-11:] if kind == "mobile" else digits
    if kind == "email":
        return view.lower()
    return " ".join(view.split())


class PiiMasker:
    """Replaces PII in texts and records per a PiiConfig; tallies `counts` per kind.
    Relative dictionary files of custom kinds are read from `base_dir` (default: the cwd).

    With action=pseudonym, `vault` maps each token to its encrypted original (see
    crypto.write_vault). `key` is the run's secret key; hash without a key uses a random
    salt, so its digests are consistent within this masker only."""

    def __init__(self, cfg: PiiConfig, key: bytes | None = None, base_dir: Path | None = None):
        if cfg.action == "pseudonym" and key is None:
            raise ConfigError(
                "data.pii.action: pseudonym needs a secret key to make reversible tokens. Fix: "
                "set data.key_file to a path outside the run folder (it is created if missing)."
            )
        self.cfg = cfg
        self.custom = custom_detectors(cfg.custom, base_dir)  # dictionary paths from base_dir
        self.counts: Counter[str] = Counter()
        self.vault: dict[str, bytes] = {}
        self._hash_key = derive_key(key, "pii-hash") if key else os.urandom(32)
        self._token_key = derive_key(key, "pii-token") if key else b""
        self._vault = AESGCM(derive_key(key, "pii-vault")) if key else None

    def replacement(self, match: PiiMatch) -> str:
        """The text that replaces one match under the configured action."""
        label = match.kind.upper()
        if self.cfg.action == "mask":
            return mask_value(match.kind, match.value)
        if self.cfg.action == "redact":
            return f"[{label}]"
        msg = f"{match.kind}\0{_canonical(match.kind, match.value)}".encode()
        if self.cfg.action == "hash":
            return f"[{label}:{hmac.new(self._hash_key, msg, hashlib.sha256).hexdigest()[:8]}]"
        token = f"<{label}_{hmac.new(self._token_key, msg, hashlib.sha256).hexdigest()[:10]}>"
        if token not in self.vault:
            nonce = os.urandom(12)
            sealed = self._vault.encrypt(nonce, match.value.encode(), token.encode())
            self.vault[token] = nonce + sealed
        return token

    def _replace(self, text: str) -> tuple[str, list[PiiMatch], list[tuple[int, int, int]]]:
        matches = detect_pii(text, self.cfg.kinds, self.custom)
        parts, edits, pos = [], [], 0
        for m in matches:
            new = self.replacement(m)
            parts += [text[pos : m.start], new]
            edits.append((m.start, m.end, len(new)))
            pos = m.end
            self.counts[m.kind] += 1
        parts.append(text[pos:])
        return "".join(parts), matches, edits

    def apply(self, text: str) -> tuple[str, list[PiiMatch]]:
        """(text with every match replaced, the matches found in the original text)."""
        new, matches, _ = self._replace(text)
        return new, matches

    def apply_with_edits(self, text: str) -> tuple[str, list[tuple[int, int, int]]]:
        """(text with every match replaced, the edits as (old start, old end, new length)),
        so offsets into the old text can follow with `moved_offset`."""
        new, _, edits = self._replace(text)
        return new, edits

    def apply_to_record(self, record: dict, fields: list[str] | None = None) -> dict:
        """A copy of `record` with `text` and string `meta` values desensitized (`fields`:
        the meta keys to scan, None = all) and `spans` moved to the new text; a span that
        overlaps a replacement is stretched to cover all of it."""
        if record.get("messages"):  # each turn on its own; the text is rebuilt from them
            from verticalize.data.conversations import conversation_text

            messages = [
                {**m, "content": self._replace(m["content"])[0]} for m in record["messages"]
            ]
            out = {**record, "messages": messages, "text": conversation_text(messages)}
        else:
            text, _, edits = self._replace(record["text"])
            out = {**record, "text": text}
        if record.get("spans"):
            out["spans"] = [
                [moved_offset(s[0], edits, end=False), moved_offset(s[1], edits, end=True), *s[2:]]
                for s in record["spans"]
            ]
        meta = record.get("meta")
        if isinstance(meta, dict):
            out["meta"] = {
                k: self._replace(v)[0]
                if isinstance(v, str) and (fields is None or k in fields)
                else v
                for k, v in meta.items()
            }
        return out


def resolve_pii_paths(cfg: PiiConfig, base_dir: Path) -> PiiConfig:
    """`cfg` with the custom kinds' dictionary files made absolute from `base_dir` (the YAML's
    folder), so a masker built anywhere (a Ray worker, the server) reads the same files."""
    custom = [
        c.model_copy(update={"dictionary": str(base_dir / c.dictionary)}) if c.dictionary else c
        for c in cfg.custom
    ]
    return cfg.model_copy(update={"custom": custom})


def moved_offset(pos: int, edits: list[tuple[int, int, int]], end: bool) -> int:
    """Where offset `pos` of the old text lands in the new one; inside an edit it snaps to
    the edit's far side for a span end and its near side for a span start."""
    delta = 0
    for s, e, n in edits:
        if pos >= e:
            delta += n - (e - s)
        elif pos > s:
            return s + delta + (n if end else 0)
        else:
            break
    return pos + delta


def reidentify(text: str, vault: dict[str, bytes], key: bytes) -> str:
    """`text` with each pseudonym token found in `vault` replaced by its original."""
    aead = AESGCM(derive_key(key, "pii-vault"))

    def original(m: re.Match) -> str:
        sealed = vault.get(m.group())
        if sealed is None:
            return m.group()
        try:
            return aead.decrypt(sealed[:12], sealed[12:], m.group().encode()).decode()
        except InvalidTag:
            raise DataError(
                f"pseudonym vault: token {m.group()} does not decrypt: wrong key or the vault "
                "was modified. Fix: use the data.key_file that was set when the data was masked."
            ) from None

    return TOKEN.sub(original, text)


def equivalence_class(row: dict, quasi_identifiers: list[str]) -> str:
    """The key of the row's k-anonymity equivalence class (its quasi-identifier values)."""
    return json.dumps([row.get(q) for q in quasi_identifiers], default=str, ensure_ascii=False)


def k_anonymity(rows: Iterable[dict], quasi_identifiers: list[str], target: int = 5) -> dict:
    """k (smallest equivalence class over the quasi-identifiers) and how many classes and
    records fall below `target`. Counts only: no quasi-identifier value is reported."""
    classes = Counter(equivalence_class(row, quasi_identifiers) for row in rows)
    return k_anonymity_of_classes(classes, quasi_identifiers, target)


def k_anonymity_of_classes(classes: Counter, quasi_identifiers: list[str], target: int) -> dict:
    """The k_anonymity report from class sizes counted elsewhere (e.g. while streaming)."""
    small = [n for n in classes.values() if n < target]
    return {
        "quasi_identifiers": list(quasi_identifiers),
        "k": min(classes.values(), default=0),
        "target": target,
        "n_records": sum(classes.values()),
        "n_classes": len(classes),
        "n_classes_below_target": len(small),
        "n_records_below_target": sum(small),
        "meets_target": bool(classes) and min(classes.values()) >= target,
    }


def score_detection(examples: Iterable[dict], kinds: Iterable[str] = PII_KINDS) -> dict:
    """Entity-level precision/recall of detect_pii against labelled examples
    ({"text", "entities": [[start, end, kind], ...]}): a hit needs the exact span and kind."""
    kinds = list(kinds)
    tally = {k: Counter(tp=0, fp=0, fn=0) for k in kinds}
    errors, n_texts, started = [], 0, time.perf_counter()
    for i, ex in enumerate(examples):
        n_texts += 1
        gold = {(s, e, k) for s, e, k in ex["entities"] if k in tally}
        pred = {(m.start, m.end, m.kind) for m in detect_pii(ex["text"], kinds)}
        for outcome, spans in (("tp", gold & pred), ("fp", pred - gold), ("fn", gold - pred)):
            for s, e, k in sorted(spans):
                tally[k][outcome] += 1
                if outcome != "tp":
                    errors.append({"line": i + 1, "error": outcome, "kind": k, "span": [s, e]})
    seconds = time.perf_counter() - started
    total = sum(tally.values(), Counter())
    return {
        **_prf(total),
        "n_entities": total["tp"] + total["fn"],
        "n_texts": n_texts,
        "texts_per_s": round(n_texts / seconds, 1) if seconds else None,
        "per_kind": {k: {**_prf(c), **c} for k, c in tally.items() if sum(c.values())},
        "errors": errors,
    }


def _prf(c: Counter) -> dict:
    p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
    r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4)}
