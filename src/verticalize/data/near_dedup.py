"""Near-duplicate detection (D4): MinHash over character n-grams, candidates from MinHashLSH,
each candidate verified by its MinHash Jaccard estimate before two documents are joined.

Character n-grams work for Chinese (no word boundaries) and English alike. The index keeps
one signature per document (`num_perm` uint32 values), never the texts, so it streams over
inputs far larger than memory would hold as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from verticalize.errors import DataError

_SCHEME = "affine32"  # datasketch 2.x default; named so signatures rebuilt from arrays match


def normalized_view(text: str) -> str:
    """The text as near-dup detection sees it: casefolded, whitespace runs collapsed to one
    space, ends stripped."""
    return " ".join(text.casefold().split())


def shingles(text: str, n: int) -> set[str]:
    """The set of character n-grams of `normalized_view(text)`. A view shorter than `n`
    (including the empty text) is one shingle: the whole view."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    view = normalized_view(text)
    if len(view) <= n:
        return {view}
    return {view[i : i + n] for i in range(len(view) - n + 1)}


@lru_cache(maxsize=8)
def _template(num_perm: int, seed: int) -> MinHash:
    # Permutation generation costs more than hashing a short text; do it once per setting.
    return MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME)


def signature(text: str, ngram: int, num_perm: int, seed: int = 1) -> np.ndarray:
    """MinHash signature of the text's character n-grams: a uint32 array of length
    `num_perm`. Deterministic for equal arguments (any process, any run) and picklable, so
    workers can compute signatures and send them to one `NearDupIndex`."""
    mh = _template(num_perm, seed).copy()
    mh.update_batch([s.encode("utf-8") for s in shingles(text, ngram)])
    return mh.hashvalues


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity of the two signatures' n-gram sets."""
    return float(np.count_nonzero(a == b)) / len(a)


def lsh_bands(threshold: float, num_perm: int, miss: float = 0.005) -> tuple[int, int]:
    """(bands, rows) for MinHashLSH: the longest bands (fewest chance candidates) that still
    propose a pair whose signatures agree at rate `threshold` with probability >= 1 - miss."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if (1.0 - threshold**rows) ** bands <= miss:
            return bands, rows
    return num_perm, 1


class NearDupIndex:
    """Streaming, online clustering of near-duplicates.

    Each added document is compared with the earlier ones that MinHashLSH proposes; a
    candidate counts as a match only when the MinHash Jaccard estimate is >= `threshold`.
    A matching document joins the cluster of its match whose representative was inserted
    earliest; representatives are therefore always the first document of their cluster.
    Joining is single-link: a document may join through any member, not only the
    representative. Memory: one signature per document plus the LSH buckets; no texts.
    """

    def __init__(self, threshold: float, ngram: int, num_perm: int, seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.threshold = threshold
        self.ngram = ngram
        self.num_perm = num_perm
        self.seed = seed
        self._lsh = MinHashLSH(num_perm=num_perm, params=lsh_bands(threshold, num_perm))
        self._keys: list[str] = []
        self._sigs: list[np.ndarray] = []
        self._rep: list[int] = []  # position of each document's representative
        self._pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def add(self, key: str, text: str | None = None, sig: np.ndarray | None = None) -> str | None:
        """Insert one document, given by its text or by its precomputed `signature()` (same
        ngram, num_perm and seed). Returns the key of the representative of the cluster it
        joins, or None when it starts a new cluster (and becomes its representative)."""
        if key in self._pos:
            raise DataError(f"near-dup index: record id {key!r} was added twice; ids must be unique")
        if sig is None:
            if text is None:
                raise ValueError("NearDupIndex.add needs text or sig")
            sig = signature(text, self.ngram, self.num_perm, self.seed)
        elif len(sig) != self.num_perm:
            raise ValueError(f"signature has {len(sig)} values, index expects {self.num_perm}")
        sig = np.asarray(sig, dtype=np.uint32)
        lean = LeanMinHash(seed=self.seed, hashvalues=sig, scheme=_SCHEME)
        rep = self._best_match(lean)
        pos = len(self._keys)
        self._keys.append(key)
        self._sigs.append(sig)
        self._rep.append(pos if rep is None else rep)
        self._pos[key] = pos
        self._lsh.insert(pos, lean, check_duplication=False)
        return None if rep is None else self._keys[rep]

    def representative(self, key: str) -> str:
        """Key of the representative of `key`'s cluster (`key` itself for a representative)."""
        return self._keys[self._rep[self._pos[key]]]

    def _best_match(self, lean: LeanMinHash) -> int | None:
        candidates = self._lsh.query(lean)
        if not candidates:
            return None
        stacked = np.stack([self._sigs[c] for c in candidates])
        similarity = np.count_nonzero(stacked == lean.hashvalues, axis=1) / self.num_perm
        reps = [self._rep[c] for c, s in zip(candidates, similarity) if s >= self.threshold]
        return min(reps) if reps else None


def cluster_near_duplicates(
    items: Iterable[tuple[str, str]],
    threshold: float,
    ngram: int,
    num_perm: int,
) -> dict[str, str]:
    """Cluster (key, text) pairs in the given order with a `NearDupIndex`. Returns a map from
    each duplicate's key to its cluster representative's key (the cluster's first item);
    representatives and singletons are not in the map."""
    index = NearDupIndex(threshold, ngram, num_perm)
    duplicates: dict[str, str] = {}
    for key, text in items:
        rep = index.add(key, text)
        if rep is not None:
            duplicates[key] = rep
    return duplicates
