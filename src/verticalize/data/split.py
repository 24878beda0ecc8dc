"""Stratified train / validation / test split with a fixed seed (D9)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from verticalize.config import SplitConfig

SPLITS = ("train", "validation", "test")


def _share(n: int, fraction: float) -> int:
    k = round(n * fraction)
    return (
        max(k, 1) if fraction > 0 and n >= 3 else k
    )  # every class reaches every split when it can


def stratified_split(records: list[dict], cfg: SplitConfig, seed: int) -> dict[str, list[dict]]:
    """Each class is shuffled with the seed and cut by the configured fractions."""
    by_class: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_class[rec["label"] if cfg.stratify else "_all"].append(rec)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for cls in sorted(by_class):
        group = sorted(by_class[cls], key=lambda r: r["id"])
        random.Random(f"{seed}:{cls}").shuffle(group)
        n_test = _share(len(group), cfg.test)
        n_val = _share(len(group) - n_test, cfg.validation / (1 - cfg.test))
        if n_test + n_val >= len(group):  # tiny class: keep at least one for training
            n_val = max(len(group) - n_test - 1, 0)
        out["test"] += group[:n_test]
        out["validation"] += group[n_test : n_test + n_val]
        out["train"] += group[n_test + n_val :]
    for name in SPLITS:  # interleave classes so files are not sorted by label
        random.Random(f"{seed}:{name}").shuffle(out[name])
    return out


def label_counts(split: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    return {name: dict(Counter(r["label"] for r in recs)) for name, recs in split.items()}
