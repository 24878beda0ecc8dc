"""The LSH bucket store of near-dup detection: band hash -> the rows that hashed there.

A Python dict of sets (datasketch's in-memory MinHashLSH storage) costs ~13-20 KB per document,
~20 GB for a million. Here the newest entries live in a dict, and every `flush_at` entries
they are frozen into sorted numpy runs (uint64 key, int32 row: 12 bytes an entry); runs of
similar size are merged, up to `max_run` entries, so lookups touch few runs and no merge
needs more than a few hundred MB. A lookup is one `searchsorted` per run for all of a
document's bands at once.
"""

from __future__ import annotations

import numpy as np


class BandTable:
    """Append-only multimap from uint64 band keys to int rows."""

    def __init__(self, flush_at: int = 1 << 21, max_run: int = 1 << 24) -> None:
        self.flush_at, self.max_run = flush_at, max_run
        self._recent: dict[int, int | list[int]] = {}
        self._n_recent = 0
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted keys, rows)

    def __len__(self) -> int:
        return self._n_recent + sum(len(k) for k, _ in self._runs)

    def nbytes(self) -> int:
        """Bytes held by the frozen runs (the dict of recent entries not counted)."""
        return sum(k.nbytes + r.nbytes for k, r in self._runs)

    def insert(self, keys: np.ndarray, row: int) -> None:
        recent = self._recent
        for key in keys.tolist():
            have = recent.get(key)
            if have is None:
                recent[key] = row
            elif isinstance(have, list):
                have.append(row)
            else:
                recent[key] = [have, row]
        self._n_recent += len(keys)
        if self._n_recent >= self.flush_at:
            self._flush()

    def query(self, keys: np.ndarray) -> list[int]:
        """Every row stored under any of `keys` (with repeats when several keys match)."""
        found: list[int] = []
        recent = self._recent
        for key in keys.tolist():
            have = recent.get(key)
            if have is None:
                continue
            if isinstance(have, list):
                found += have
            else:
                found.append(have)
        for run_keys, run_rows in self._runs:
            lo = np.searchsorted(run_keys, keys, side="left")
            hi = np.searchsorted(run_keys, keys, side="right")
            for a, b in zip(lo[hi > lo].tolist(), hi[hi > lo].tolist(), strict=True):
                found += run_rows[a:b].tolist()
        return found

    def _flush(self) -> None:
        n = self._n_recent
        keys = np.empty(n, dtype=np.uint64)
        rows = np.empty(n, dtype=np.int32)
        i = 0
        for key, have in self._recent.items():
            if isinstance(have, list):
                keys[i : i + len(have)] = key
                rows[i : i + len(have)] = have
                i += len(have)
            else:
                keys[i], rows[i] = key, have
                i += 1
        self._recent, self._n_recent = {}, 0
        order = np.argsort(keys, kind="stable")
        run = (keys[order], rows[order])
        del keys, rows, order
        # Merge with the previous run while it is no more than twice as big (LSM levels).
        while self._runs and len(self._runs[-1][0]) <= 2 * len(run[0]):
            prev = self._runs[-1]
            if len(prev[0]) + len(run[0]) > self.max_run:
                break
            self._runs.pop()
            merged_keys = np.concatenate([prev[0], run[0]])
            order = np.argsort(merged_keys, kind="stable")
            run = (merged_keys[order], np.concatenate([prev[1], run[1]])[order])
            del merged_keys, order
        self._runs.append(run)
