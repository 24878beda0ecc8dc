"""Near-duplicate detection (D4): MinHash over shingles that fit the script, candidates from
LSH bands, each candidate verified by two MinHash Jaccard estimates before two documents are
joined: of their n-gram sets (same phrasing) and of their unit sets (same vocabulary).

Shingles are n-grams of units: one unit per CJK character (Chinese has no word boundaries),
one per word elsewhere (a word-level edit of Latin text changes one unit, not a run of
character n-grams). A document's script is the script of most of its units, and each script
has its own n-gram size and threshold (`DEFAULT_SHINGLING`, measured by bench/dedup.py).
Documents of different scripts are never compared.

The vocabulary check is what separates near-duplicates from documents of one template: two
news items "X met Y in Beijing today" share most 2-grams, but the names, places and figures
that differ bring units the other lacks, while an edited copy keeps almost all of its units.

The index keeps two signatures per document (`num_perm` uint32 values each) and its band keys
in a `BandTable` (12 bytes per band once frozen), never the texts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from datasketch import MinHash

from verticalize.data.band_table import BandTable
from verticalize.data.units import is_cjk, units
from verticalize.errors import DataError

_SCHEME = "affine32"  # datasketch 2.x default; named so signatures rebuilt from arrays match
_LSH_PERM = 128  # signature values that LSH bands are cut from
UNIT_NAMES = {"cjk": "characters", "latin": "words"}  # what one unit is, per script


@dataclass(frozen=True)
class Shingling:
    """How one script's documents are compared: n-grams of `ngram` units, joined when the
    Jaccard similarity of their n-gram sets is >= `threshold` and that of their unit sets is
    >= `vocab_threshold` (0 turns the vocabulary check off)."""

    ngram: int
    threshold: float
    vocab_threshold: float = 0.0


# Measured with bench/dedup.py (real zh / en corpora, planted copies with 5-20% of their
# units edited, precision by an independent edit-similarity judge). 2-gram Jaccard alone
# tops out at precision 0.985 (zh) / 0.978 (en) at recall 0.94 / 0.97: news items of one
# template, statute articles sharing their penalty clause and one tweet with other links
# reach 0.45-0.6. Their vocabularies differ (other names, places, figures): unit-set
# Jaccard >= 0.7 rejects them while edited copies pass, which also lets the 2-gram
# threshold drop to 0.35 for recall. Seeds 0-2: precision >= 0.996, recall >= 0.94.
DEFAULT_SHINGLING = {
    "cjk": Shingling(ngram=2, threshold=0.35, vocab_threshold=0.7),
    "latin": Shingling(ngram=2, threshold=0.35, vocab_threshold=0.7),
}


def shingling(
    threshold: float | None = None, ngram: int | None = None, vocab_threshold: float | None = None
) -> dict[str, Shingling]:
    """Each script's settings: the given values where set, else the script's default."""
    return {
        script: Shingling(
            ngram or d.ngram,
            d.threshold if threshold is None else threshold,
            d.vocab_threshold if vocab_threshold is None else vocab_threshold,
        )
        for script, d in DEFAULT_SHINGLING.items()
    }


def configured(near) -> dict[str, Shingling]:
    """The settings of a `data.dedup.near` config section (its unset values: the defaults)."""
    return shingling(near.threshold, near.ngram, near.vocab_threshold)


def normalized_view(text: str) -> str:
    """The text as near-dup detection sees it: casefolded, whitespace runs collapsed to one
    space, ends stripped."""
    return " ".join(text.casefold().split())


def script_of(found: list[str]) -> str:
    """'cjk' when most units are Han / kana characters, else 'latin'."""
    cjk = sum(len(u) == 1 and is_cjk(u) for u in found)
    return "cjk" if found and cjk * 2 >= len(found) else "latin"


def shingles(text: str, n: int) -> set[str]:
    """The set of n-grams of the text's units (joined by U+001F). A text with fewer than `n`
    units is one shingle: all its units; a text without any is its normalized view."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    found = units(text)
    if not found:
        return {normalized_view(text)}
    if len(found) <= n:
        return {"\x1f".join(found)}
    return {"\x1f".join(found[i : i + n]) for i in range(len(found) - n + 1)}


class Signature(NamedTuple):
    """A document's script and two MinHashes (uint32, `num_perm` values each): of its n-gram
    set (`values`, cut into LSH bands) and of its unit set (`vocab`)."""

    script: str
    values: np.ndarray
    vocab: np.ndarray


@lru_cache(maxsize=8)
def _template(num_perm: int, seed: int) -> MinHash:
    # Permutation generation costs more than hashing a short text; do it once per setting.
    return MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME)


def signature(text: str, settings: dict[str, Shingling], num_perm: int, seed: int = 1) -> Signature:
    """The text's script, the MinHash of its n-grams with that script's n-gram size and the
    MinHash of its units. Deterministic for equal arguments (any process, any run) and
    picklable, so workers can compute signatures and send them to one `NearDupIndex`."""
    found = units(text)
    script = script_of(found)
    return Signature(
        script,
        _minhash(shingles(text, settings[script].ngram), num_perm, seed),
        _minhash(set(found) or {normalized_view(text)}, num_perm, seed),
    )


def _minhash(items: set[str], num_perm: int, seed: int) -> np.ndarray:
    mh = _template(num_perm, seed).copy()
    mh.update_batch([s.encode("utf-8") for s in items])
    return mh.hashvalues


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity of the two signatures' n-gram sets."""
    return float(np.count_nonzero(a == b)) / len(a)


def lsh_bands(threshold: float, num_perm: int, miss: float = 0.005) -> tuple[int, int]:
    """(bands, rows) for LSH: the longest bands, then the fewest of them (fewest chance
    candidates, least memory), that still propose a pair whose signatures agree at rate
    `threshold` with probability >= 1 - miss; (num_perm, 1) when nothing else does."""
    for rows in range(num_perm // 2, 0, -1):
        p_band = threshold**rows  # chance that one band of a pair at the threshold collides
        if p_band >= 1.0:
            return 2, rows
        bands = max(2, math.ceil(math.log(miss) / math.log1p(-p_band)))
        if bands * rows <= num_perm:
            return bands, rows
    return num_perm, 1


_MIX = np.uint64(0x9E3779B97F4A7C15)


def band_keys(values: np.ndarray, bands: int, rows: int, salt: int) -> np.ndarray:
    """One uint64 key per band of the signature: equal bands (same salt) give equal keys."""
    cut = values[: bands * rows].reshape(bands, rows).astype(np.uint64)
    keys = np.arange(bands, dtype=np.uint64) + np.uint64(salt << 32)
    for j in range(rows):
        keys = (keys ^ cut[:, j]) * _MIX
        keys ^= keys >> np.uint64(29)
    return keys


class NearDupIndex:
    """Streaming, online clustering of near-duplicates.

    Each added document is compared with the earlier documents of its script that share an
    LSH band with it; a candidate counts as a match only when the MinHash Jaccard estimates
    of their n-gram sets and of their unit sets are >= the script's `threshold` and
    `vocab_threshold`. The document joins the cluster of its earliest-inserted match, or
    else starts a new cluster and represents it; clusters never merge, so a representative
    is always its cluster's first document, and no two representatives match. Memory: two
    signatures per document plus its band keys; never the texts.
    """

    def __init__(
        self,
        settings: dict[str, Shingling],
        num_perm: int,
        seed: int = 1,
        table: BandTable | None = None,
    ) -> None:
        for script, s in settings.items():
            if not 0.0 < s.threshold <= 1.0:
                raise ValueError(f"{script} threshold must be in (0, 1], got {s.threshold}")
            if not 0.0 <= s.vocab_threshold <= 1.0:
                raise ValueError(
                    f"{script} vocab_threshold must be in [0, 1], got {s.vocab_threshold}"
                )
            if s.ngram < 1:
                raise ValueError(f"{script} ngram must be >= 1, got {s.ngram}")
        if num_perm < 16:
            raise ValueError(f"num_perm must be >= 16, got {num_perm}")
        self.settings, self.num_perm, self.seed = settings, num_perm, seed
        # Bands over the first values only: each band costs memory per document, while
        # verification precision keeps growing with the full signature length.
        lsh_perm = min(num_perm, _LSH_PERM)
        self._bands = {s: lsh_bands(x.threshold, lsh_perm) for s, x in settings.items()}
        self._salt = {s: i + 1 for i, s in enumerate(settings)}
        self._table = table if table is not None else BandTable()
        self._keys: list[str] = []  # row i of _sigs is the signature of _keys[i]
        self._sigs = np.empty((1024, 2, num_perm), dtype=np.uint32)  # n-grams, units
        self._script = np.empty(1024, dtype=np.int8)
        self._rep: list[int] = []  # row of each document's representative
        self._row: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    def add(self, key: str, text: str | None = None, sig: Signature | None = None) -> str | None:
        """Insert one document, given by its text or by its precomputed `signature()` (same
        settings, num_perm and seed). Returns the key of the representative of the cluster
        it joins, or None when it matches no earlier document and so starts a new cluster."""
        if key in self._row:
            raise DataError(
                f"near-dup index: record id {key!r} was added twice; ids must be unique"
            )
        if sig is None:
            if text is None:
                raise ValueError("NearDupIndex.add needs text or sig")
            sig = signature(text, self.settings, self.num_perm, self.seed)
        elif not len(sig.values) == len(sig.vocab) == self.num_perm:
            raise ValueError(
                f"signature has {len(sig.values)} values, index expects {self.num_perm}"
            )
        values = np.asarray(sig.values, dtype=np.uint32)
        both = np.stack([values, np.asarray(sig.vocab, dtype=np.uint32)])
        salt = self._salt[sig.script]
        keys = band_keys(values, *self._bands[sig.script], salt)
        row = len(self._keys)
        match = self._earliest_match(keys, both, sig.script, salt)
        rep = row if match is None else self._rep[match]
        if row == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
            self._script = np.concatenate([self._script, np.empty_like(self._script)])
        self._sigs[row], self._script[row] = both, salt
        self._keys.append(key)
        self._rep.append(rep)
        self._row[key] = row
        self._table.insert(keys, row)
        return None if rep == row else self._keys[rep]

    def representative(self, key: str) -> str:
        """Key of the representative of `key`'s cluster (`key` itself for a representative)."""
        return self._keys[self._rep[self._row[key]]]

    def duplicates(self) -> dict[str, str]:
        """Each non-representative key -> its cluster representative's key."""
        keys = self._keys
        return {keys[i]: keys[rep] for i, rep in enumerate(self._rep) if rep != i}

    def _earliest_match(
        self, keys: np.ndarray, both: np.ndarray, script: str, salt: int
    ) -> int | None:
        found = self._table.query(keys)
        if not found:
            return None
        candidates = np.unique(np.asarray(found, dtype=np.int64))  # ascending: earliest first
        # same estimates as estimated_jaccard: [:, 0] of the n-grams, [:, 1] of the units
        agree = np.count_nonzero(self._sigs[candidates] == both, axis=2) / self.num_perm
        s = self.settings[script]
        # a 64-bit key collision across scripts is no match
        ok = (
            (agree[:, 0] >= s.threshold)
            & (agree[:, 1] >= s.vocab_threshold)
            & (self._script[candidates] == salt)
        )
        hits = candidates[ok]
        return int(hits[0]) if len(hits) else None


def cluster_near_duplicates(
    items: Iterable[tuple[str, str]],
    num_perm: int = 128,
    threshold: float | None = None,
    ngram: int | None = None,
    vocab_threshold: float | None = None,
) -> dict[str, str]:
    """Cluster (key, text) pairs, in the given order, with a `NearDupIndex`. Returns each
    duplicate's key -> its cluster representative's key (the cluster's first item);
    representatives and singletons are not in the map."""
    index = NearDupIndex(shingling(threshold, ngram, vocab_threshold), num_perm)
    for key, text in items:
        index.add(key, text)
    return index.duplicates()
