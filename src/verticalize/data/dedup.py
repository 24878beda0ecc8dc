"""Exact deduplication on a hash of the normalized text (D4). The first record of each
cluster is kept; when a cluster carries different labels, all of it is dropped, because
there is no telling which label is right."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from verticalize.data.manifest import Quarantine, StepTally


def text_key(text: str) -> str:
    return hashlib.sha256(" ".join(text.casefold().split()).encode("utf-8")).hexdigest()


def dedup_exact(records: list[dict], quarantine: Quarantine):
    """Returns (survivors, tally, clusters) — one cluster entry per duplicated text."""
    tally = StepTally("dedup_exact")
    groups: dict[str, list[dict]] = {}
    for rec in records:
        tally.n_in += 1
        groups.setdefault(text_key(rec["text"]), []).append(rec)
    survivors, clusters = [], []
    for key, group in groups.items():
        labels = sorted({r["label"] for r in group})
        if len(group) == 1:
            survivors.append(group[0])
            continue
        if len(labels) > 1:
            for r in group:
                quarantine.put(tally, "conflicting_labels", r, field="label", value=r["label"])
            clusters.append(_cluster(key, None, group, f"dropped: labels disagree {labels}"))
            continue
        survivors.append(group[0])
        for r in group[1:]:
            quarantine.put(tally, "duplicate", r, field="text", value=group[0]["id"])
        clusters.append(_cluster(key, group[0], group[1:], "first occurrence kept"))
    tally.n_out = len(survivors)
    return survivors, tally, clusters


def _cluster(key: str, kept: dict | None, dropped: Iterable[dict], why: str) -> dict:
    return {
        "hash": key[:16],
        "kept": kept["id"] if kept else None,
        "dropped": [r["id"] for r in dropped],
        "why": why,
    }
