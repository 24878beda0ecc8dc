"""Character noise for the robustness suite (E4): generic edits and Chinese-specific variants.

Every kind edits round(rate * n) of a text's n eligible characters (at least one when there
is any); whitespace is never eligible. Generic kinds: every non-space character is eligible;
insert and replace draw from the text's own script. A swap moves two characters, so `swap`
makes round(rate * n / 2) non-overlapping adjacent swaps. Chinese kinds: only CJK characters
with a variant are eligible: homophones and similar shapes from `data/zh_variants.tsv`
(regenerate with scripts/make_zh_variants.py); traditional from OpenCC s2t, kept only when
t2s turns it back into the original.
"""

from __future__ import annotations

import random
import re
import string
from functools import lru_cache
from importlib.resources import files

import opencc

from verticalize.evaluate.baselines import cjk_share

NOISE_KINDS = ("insert", "delete", "replace", "swap", "homophone", "similar_shape", "traditional")
GENERIC_KINDS = NOISE_KINDS[:4]
CHINESE_KINDS = NOISE_KINDS[4:]
COMMON_CHARS = 3500  # inserted / replacement Chinese characters come from the table's top rows

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1)
def variant_table() -> dict[str, tuple[str, str]]:
    """char -> (homophones, similar_shape), most frequent character first."""
    text = (files("verticalize.evaluate") / "data" / "zh_variants.tsv").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines()[1:]:  # header: char, homophones, similar_shape
        if line:
            char, homophones, similar = line.split("\t")
            table[char] = (homophones, similar)
    return table


@lru_cache(maxsize=1)
def _common_chinese() -> tuple[str, ...]:
    return tuple(list(variant_table())[:COMMON_CHARS])


@lru_cache(maxsize=2)
def _opencc(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


@lru_cache(maxsize=8192)
def _traditional(ch: str) -> str:
    """OpenCC s2t of one character; `ch` itself unless it converts and converts back (t2s)."""
    out = _opencc("s2t").convert(ch)
    return out if len(out) == 1 and _opencc("t2s").convert(out) == ch else ch


def _is_cjk(ch: str) -> bool:
    return bool(_CJK.fullmatch(ch))


def _random_char(ch: str | None, chinese: bool, rng: random.Random) -> str:
    """A random character of `ch`'s script (of the text's when `ch` is None), not `ch`."""
    if ch is not None and _is_cjk(ch):
        pool = _common_chinese()
    elif ch is not None and ch in string.ascii_uppercase:
        pool = string.ascii_uppercase
    elif ch is not None and ch in string.digits:
        pool = string.digits
    elif chinese and (ch is None or not ch.isalpha()):
        pool = _common_chinese()
    else:
        pool = string.ascii_lowercase
    while True:
        new = rng.choice(pool)
        if new != ch:
            return new


def _variant(ch: str, kind: str) -> str:
    """Candidate replacements for `ch` under a Chinese kind ("" when none)."""
    if kind == "traditional":
        trad = _traditional(ch)
        return "" if trad == ch else trad
    entry = variant_table().get(ch)
    if entry is None:
        return ""
    return entry[0] if kind == "homophone" else entry[1]


def _count(rate: float, eligible: int) -> int:
    return min(eligible, max(1, round(rate * eligible))) if eligible and rate > 0 else 0


def _swap(chars: list[str], rate: float, rng: random.Random) -> list[str]:
    n_chars = sum(not c.isspace() for c in chars)
    starts = [
        i
        for i in range(len(chars) - 1)
        if not chars[i].isspace() and not chars[i + 1].isspace() and chars[i] != chars[i + 1]
    ]
    want = _count(rate / 2, n_chars) if starts else 0
    rng.shuffle(starts)
    used: set[int] = set()
    for i in starts:
        if want == 0:
            break
        if i in used or i + 1 in used:
            continue
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
        used |= {i, i + 1}
        want -= 1
    return chars


def add_noise(text: str, kind: str, rate: float, rng: random.Random) -> str:
    """Edit about `rate` of the characters of `text` with noise `kind`; deterministic in `rng`."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(NOISE_KINDS)}")
    chars = list(text)
    if kind == "swap":
        return "".join(_swap(chars, rate, rng))
    if kind in CHINESE_KINDS:
        eligible = [i for i, c in enumerate(chars) if _is_cjk(c) and _variant(c, kind)]
    else:
        eligible = [i for i, c in enumerate(chars) if not c.isspace()]
    chosen = sorted(rng.sample(eligible, _count(rate, len(eligible))))
    if not chosen:
        return text
    chinese = kind in ("insert", "replace") and cjk_share([text]) > 0.3
    for i in chosen:
        if kind == "insert":
            chars[i] += _random_char(None, chinese, rng)
        elif kind == "delete":
            chars[i] = ""
        elif kind == "replace":
            chars[i] = _random_char(chars[i], chinese, rng)
        else:
            chars[i] = rng.choice(_variant(chars[i], kind))
    return "".join(chars)


def applicable_kinds(texts: list[str]) -> list[str]:
    """All kinds for mostly-Chinese texts (CJK share > 0.3), else the four generic ones."""
    return list(NOISE_KINDS if cjk_share(texts) > 0.3 else GENERIC_KINDS)


def noisy_copies(records: list[dict], kind: str, rate: float, seed: int) -> list[dict]:
    """Copies of `records` with `text` noised; the same (seed, kind) gives the same copies."""
    rng = random.Random(f"{seed}:{kind}")
    return [{**r, "text": add_noise(r["text"], kind, rate, rng)} for r in records]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, bit-parallel (Myers 1999): one pass over `b`, `a` as bit masks."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(a):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full, top = (1 << len(a)) - 1, 1 << (len(a) - 1)
    pv, mv, score = full, 0, len(a)
    for ch in b:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & full) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        score += 1 if ph & top else -1 if mh & top else 0
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def changed_share(clean: list[str], noisy: list[str]) -> float:
    """Character edit distance of the noisy texts from the clean ones, per clean character."""
    total = sum(len(t) for t in clean)
    return sum(edit_distance(a, b) for a, b in zip(clean, noisy, strict=True)) / (total or 1)
