"""PII detectors (D5): regexes plus checksum and plausibility validation.

Detection runs on a one-to-one NFKC view of the text (full-width ０-９, ＠, －, （ become
ASCII, every other character stays), so offsets into the view are offsets into the
original. Numbers are anchored with digit lookarounds: a valid ID inside a longer digit
run is part of some other number, not an ID.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from verticalize.config import PII_KINDS
from verticalize.data.pii_address import find_cn_addresses
from verticalize.data.pii_ids import (
    find_hk_ids,
    find_idn_emails,
    find_ipv6,
    find_mo_ids,
    find_plates,
    find_ssns,
    find_tw_ids,
    find_usccs,
)
from verticalize.data.pii_names import find_cn_names, find_en_names
from verticalize.errors import ConfigError


@dataclass(frozen=True)
class PiiMatch:
    """One detected identifier: text[start:end] == value in the original text."""

    start: int
    end: int
    kind: str
    value: str


@functools.lru_cache(maxsize=16384)
def _nfkc_char(ch: str) -> str:
    n = unicodedata.normalize("NFKC", ch)
    return n if len(n) == 1 else ch


def normalized_view(text: str) -> str:
    """NFKC per character where it yields one character, so len(view) == len(text)."""
    return text if text.isascii() else "".join(map(_nfkc_char, text))


# GB 11643: province codes (first two digits) that exist
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82 83 91".split()
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _plausible_birth(yyyymmdd: str) -> bool:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


def id_card_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits of an ID."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def id_card_structure_ok(digits: str) -> bool:
    """Province code and birth date are plausible (18- or 15-character IDs)."""
    if digits[:2] not in _PROVINCES:
        return False
    birth = digits[6:14] if len(digits) == 18 else "19" + digits[6:12]
    return _plausible_birth(birth)


def id_card_valid(value: str) -> bool:
    """True for a mainland resident ID: 18 chars with a valid check char, or legacy 15 digits."""
    v = value.replace(" ", "").upper()
    if len(v) == 15:
        return v.isdigit() and id_card_structure_ok(v)
    if len(v) != 18 or not v[:17].isdigit() or not id_card_structure_ok(v):
        return False
    return id_card_check_char(v[:17]) == v[17]


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


_ID = re.compile(r"(?<!\d)(?:\d{6} ?\d{8} ?\d{3}[\dXx]|\d{15})(?!\d)")
_MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d([ -]?)\d{4}\1\d{4}(?!\d)")
_LANDLINE = re.compile(
    r"(?<![\d(])(?:\(0[1-9]\d{1,2}\)\s?|0[1-9]\d{1,2}[- ])[2-9]\d{6,7}(?!\d)"
    r"|(?<![\d-])[48]00[- ]?\d{3}[- ]?\d{4}(?!\d)"
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"\.[A-Za-z]{2,}(?![A-Za-z0-9])"
)
# ISO/IEC 7812: payment cards start with 3-6; order numbers and dates (1…, 2…) do not
_CARD = re.compile(
    r"(?<!\d)(?<!\d[ -])(?:[3-6]\d{12,18}(?!\d)"
    r"|[3-6]\d{3}([ -])\d{4}(?:\1\d{4}){1,2}(?:\1\d{1,4})?(?![ -]?\d))"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d)")
_PASSPORT = re.compile(r"(?<![A-Za-z0-9])(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7})(?![A-Za-z0-9])")
_PASSPORT_CTX = re.compile(
    r"(?i:passport|护照)[^\n]{0,16}?(?<![A-Za-z0-9])([A-Z]{1,2}\d{7,8})(?![A-Za-z0-9])"
)

Span = tuple[int, int]


def _id_cards(view: str) -> Iterator[Span]:
    for m in _ID.finditer(view):
        if id_card_valid(m.group()):
            yield m.span()


def _bank_cards(view: str) -> Iterator[Span]:
    for m in _CARD.finditer(view):
        digits = re.sub(r"[ -]", "", m.group())
        # an 18-digit number shaped like an ID (region + birth date) is a mistyped ID
        if len(digits) == 18 and id_card_structure_ok(digits):
            continue
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            yield m.span()


def _plain(pattern: re.Pattern) -> Callable[[str], Iterator[Span]]:
    return lambda view: (m.span() for m in pattern.finditer(view))


_VERSION_BEFORE = re.compile(r"(?i:version|ver\.?|v|版本|版本号)\s*[:：]?\s*$")


def _ipv4s(view: str) -> Iterator[Span]:
    for m in _IPV4.finditer(view):
        if not _VERSION_BEFORE.search(view, max(m.start() - 12, 0), m.start()):  # v2.0.1.4
            yield m.span()


def _passports(view: str) -> Iterator[Span]:
    yield from _plain(_PASSPORT)(view)
    yield from (m.span(1) for m in _PASSPORT_CTX.finditer(view))


def _emails(view: str) -> Iterator[Span]:
    yield from _plain(_EMAIL)(view)
    yield from find_idn_emails(view)


Detector = Callable[[str], Iterator[Span]]
DETECTORS: dict[str, Detector] = {
    "email": _emails,
    "id_card": _id_cards,
    "uscc": find_usccs,
    "bank_card": _bank_cards,
    "hk_id": find_hk_ids,
    "tw_id": find_tw_ids,
    "mo_id": find_mo_ids,
    "passport": _passports,
    "ssn": find_ssns,
    "mobile": _plain(_MOBILE),
    "landline": _plain(_LANDLINE),
    "ipv6": find_ipv6,
    "ipv4": _ipv4s,
    "plate": find_plates,
    "cn_address": find_cn_addresses,
    "cn_name": find_cn_names,
    "en_name": find_en_names,
}
# on overlap the longer match wins; on a tie the kind listed first in DETECTORS wins
_RANK = {kind: i for i, kind in enumerate(DETECTORS)}
assert set(DETECTORS) == set(PII_KINDS)


def detect_pii(
    text: str, kinds: Iterable[str] = PII_KINDS, custom: dict[str, Detector] | None = None
) -> list[PiiMatch]:
    """Non-overlapping PII matches of the given kinds and of the `custom` detectors
    (data.pii_custom), sorted by start, offsets into `text`."""
    kinds = list(kinds)
    if unknown := sorted(set(kinds) - set(DETECTORS)):
        raise ConfigError(
            f"data.pii.kinds: unknown kind(s) {unknown}. Fix: use some of {list(PII_KINDS)}"
        )
    view = normalized_view(text)
    detectors = [(k, DETECTORS[k]) for k in kinds] + list((custom or {}).items())
    found = [(s, e, k) for k, find in detectors for s, e in find(view) if e > s]
    found.sort(key=lambda c: (-(c[1] - c[0]), _RANK.get(c[2], len(_RANK)), c[0]))
    taken, used = [], bytearray(len(text))
    for s, e, k in found:
        if not any(used[s:e]):
            taken.append((s, e, k))
            used[s:e] = b"\x01" * (e - s)
    return [PiiMatch(s, e, k, text[s:e]) for s, e, k in sorted(taken)]
