"""Stratified, group-aware train / validation / test split and k folds, seeded (D9).

A unit is a group of records that must stay together (near-duplicates, augmented copies
and their origin, records sharing a `group` field such as a patient id); units, not
records, are shuffled and cut, each class on its own so every split keeps the label mix.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from verticalize.config import SplitConfig

SPLITS = ("train", "validation", "test")


def _share(n: int, fraction: float) -> int:
    k = round(n * fraction)
    return max(k, 1) if fraction > 0 and n >= 3 else k  # every class reaches every split


def _units(items: list[tuple[str, str | None, str]], stratify: bool):
    """{class: [(unit key, [ids])]} — a unit's class is its members' most common label."""
    members: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for rid, label, group in items:
        members[group].append((rid, label))
    by_class: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for key, recs in members.items():
        labels = Counter(str(lab) for _, lab in recs)
        cls = max(sorted(labels), key=labels.__getitem__) if stratify else "_all"
        by_class[cls].append((key, sorted(rid for rid, _ in recs)))
    return by_class


def assign_splits(
    items: list[tuple[str, str | None, str]], cfg: SplitConfig, seed: int
) -> tuple[dict[str, str], dict[str, int]]:
    """items are (record id, label, group key). Returns ({id: split}, {id: fold}); folds cover
    train + validation records when `cfg.folds` is set."""
    split_of: dict[str, str] = {}
    fold_of: dict[str, int] = {}
    for cls, units in sorted(_units(items, cfg.stratify).items()):
        units.sort()
        random.Random(f"{seed}:{cls}").shuffle(units)
        n = sum(len(ids) for _, ids in units)
        n_test = _share(n, cfg.test)
        n_val = _share(n - n_test, cfg.validation / (1 - cfg.test))
        if n_test + n_val >= n:  # tiny class: keep at least one for training
            n_val = max(n - n_test - 1, 0)
        filled = Counter()
        rest = []
        for key, ids in units:
            name = "test" if filled["test"] < n_test else "validation"
            if name == "validation" and filled["validation"] >= n_val:
                name = "train"
            filled[name] += len(ids)
            for rid in ids:
                split_of[rid] = name
            if name != "test":
                rest.append((key, ids))
        if cfg.folds:
            sizes = [0] * cfg.folds
            for _key, ids in rest:  # the smallest fold takes the next unit: balanced by class
                k = sizes.index(min(sizes))
                sizes[k] += len(ids)
                for rid in ids:
                    fold_of[rid] = k
    return split_of, fold_of


def stratified_split(records: list[dict], cfg: SplitConfig, seed: int) -> dict[str, list[dict]]:
    """Split in-memory records (each its own unit unless it carries `group`)."""
    items = [(r["id"], r["label"], r.get("group") or r["id"]) for r in records]
    split_of, _ = assign_splits(items, cfg, seed)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for rec in records:
        out[split_of[rec["id"]]].append(rec)
    for name in SPLITS:  # interleave classes so files are not sorted by label
        out[name].sort(key=lambda r: r["id"])
        random.Random(f"{seed}:{name}").shuffle(out[name])
    return out


def label_counts(split: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    return {name: dict(Counter(r["label"] for r in recs)) for name, recs in split.items()}
