"""Tag schemes for NER (M2): words of a text, character spans ↔ word tags, strict entities.

A text is cut into words: each CJK character is a word (Chinese NER is character-based),
a run of letters/digits is a word, every other non-space character is a word of its own.
The model labels words (through their first sub-token); spans map to words by offsets.
"""

from __future__ import annotations

import re

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+|\S")
CJK_CHAR = re.compile(f"[{_CJK}]")  # one CJK character: a word of its own

SCHEMES = ("bio", "bioes")
INPUT_SCHEMES = ("auto", "bio", "iob1", "bioes", "bmes")


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the words of `text`."""
    return [m.span() for m in _WORD.finditer(text)]


def tag_names(types: list[str], scheme: str) -> list[str]:
    """All tags of `scheme` over entity `types`: O first, then per type B, I (, E, S)."""
    prefixes = "BI" if scheme == "bio" else "BIES"
    return ["O"] + [f"{p}-{t}" for t in types for p in prefixes]


def spans_to_word_tags(
    words: list[tuple[int, int]], spans: list, scheme: str
) -> tuple[list[str], int]:
    """Word tags for character `spans`, and how many spans do not start and end on word
    boundaries (those are tagged over the words they touch)."""
    tags = ["O"] * len(words)
    misaligned = 0
    starts = [w[0] for w in words]
    for s, e, kind in spans:
        inside = [i for i, (ws, we) in enumerate(words) if ws < e and we > s]
        if not inside:
            misaligned += 1
            continue
        if words[inside[0]][0] != s or words[inside[-1]][1] != e or s not in starts:
            misaligned += 1
        if any(tags[i] != "O" for i in inside):  # overlapping spans: keep the first
            misaligned += 1
            continue
        for k, i in enumerate(inside):
            if scheme == "bioes" and len(inside) == 1:
                p = "S"
            elif k == 0:
                p = "B"
            elif scheme == "bioes" and k == len(inside) - 1:
                p = "E"
            else:
                p = "I"
            tags[i] = f"{p}-{kind}"
    return tags, misaligned


def _split(tag: str) -> tuple[str, str]:
    if tag == "O" or "-" not in tag:
        return "O", ""
    p, _, kind = tag.partition("-")
    return p, kind


def entities(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    """Strict entities (type, first word, last word + 1), as seqeval's strict mode reads
    IOB2 / IOBES: a chunk must open with B (or be S) and continue with I (, close with E) of
    the same type; anything else is not an entity."""
    out = []
    n = len(tags)
    i = 0
    while i < n:
        p, kind = _split(tags[i])
        if scheme == "bioes" and p == "S":
            out.append((kind, i, i + 1))
            i += 1
            continue
        if p != "B":
            i += 1
            continue
        j = i + 1
        while j < n and _split(tags[j]) == ("I", kind):
            j += 1
        if scheme == "bio":
            out.append((kind, i, j))
            i = j
        elif j < n and _split(tags[j]) == ("E", kind):
            out.append((kind, i, j + 1))
            i = j + 1
        else:
            i = j
    return out


def word_tags_to_spans(words: list[tuple[int, int]], tags: list[str], scheme: str) -> list:
    """Character spans [[start, end, TYPE], …] of the strict entities in word `tags`."""
    return [[words[a][0], words[b - 1][1], kind] for kind, a, b in entities(tags, scheme)]


def detect_scheme(tags: list[str]) -> str:
    """The scheme a CoNLL file's tags use: bmes (M-), bioes (E-/S-), else bio."""
    prefixes = {_split(t)[0] for t in tags}
    if "M" in prefixes:
        return "bmes"
    if prefixes & {"E", "S"}:
        return "bioes"
    return "bio"


def read_tags(tags: list[str]) -> list[tuple[str, int, int]]:
    """Chunks (type, first token, last token + 1) of a tagged file, read leniently like
    conlleval: I-X (or M-/E-X) that does not continue an X chunk opens a new one; IOB1's
    B only separates adjacent chunks of one type. BMES is BIOES with M for I."""
    out: list[list] = []
    prev_p, prev_kind = "O", ""
    for i, tag in enumerate(tags):
        p, kind = _split(tag)
        if p == "M":
            p = "I"
        open_ = out and out[-1][2] == i and prev_kind == kind and prev_p in ("B", "I")
        if p == "O":
            prev_p, prev_kind = "O", ""
            continue
        if p in ("B", "S") or not open_:
            out.append([kind, i, i + 1])
        else:
            out[-1][2] = i + 1
        prev_p, prev_kind = ("I" if p in ("B", "I") else "O"), kind
        if p in ("E", "S"):
            prev_p = "O"
    return [tuple(x) for x in out]
