"""Deduplication bookkeeping (D4): exact copies by a hash of the normalized text, near
duplicates through `near_dedup.NearDupIndex`, and the groups the split must keep together."""

from __future__ import annotations

import hashlib


def text_key(text: str) -> str:
    """sha256 of the case-folded, whitespace-collapsed text: equal for exact copies."""
    return hashlib.sha256(" ".join(text.casefold().split()).encode("utf-8")).hexdigest()


class Deduplicator:
    """Streaming exact + near-duplicate bookkeeping for the data stage (D4, D9).

    Records are offered in input order; only small per-record facts are kept (a 64-bit text
    hash, the label, a MinHash signature when near dedup is on), never texts. Exact copies
    with the first copy's label are dropped at once; a copy with another label marks the whole
    cluster as conflicting (its first copy is dropped when the splits are written). Near
    duplicates join the cluster of the earliest similar record: with `action: drop` a member
    with the representative's label is dropped, every other member is kept in the
    representative's group, so near-duplicates never straddle train and test.
    """

    def __init__(self, exact: bool, near=None, reviewed: tuple[str, ...] = ()):
        self.exact, self.near = exact, near if near is not None and near.enabled else None
        self.reviewed = reviewed  # id prefixes ("s1:") of the `reviewed: true` sources
        self.superseded: set[str] = set()  # kept first copies an expert's review replaced
        self.first: dict[int, str] = {}
        self.label: dict[str, str | None] = {}
        self.exact_clusters: dict[str, dict] = {}
        self.near_clusters: dict[str, dict] = {}
        self.parent: dict[str, str] = {}
        if self.near is not None:
            from verticalize.data.near_dedup import NearDupIndex, configured

            self.settings = configured(self.near)
            self.index = NearDupIndex(self.settings, self.near.num_perm)

    def offer(self, rec: dict, sig=None, key: str | None = None) -> tuple[str, str] | None:
        """None when the record is kept, else (reason, id of the record it duplicates).
        `key` is the record's `text_key` (computed from its text when not given)."""
        rid, label = rec["id"], rec.get("label")
        if self.exact:
            key = int((key or text_key(rec["text"]))[:16], 16)
            first = self.first.get(key)
            if first is None:
                self.first[key] = rid
                self.label[rid] = label  # also when near dedup drops it next
            elif rid.startswith(self.reviewed) != first.startswith(self.reviewed):
                return self._review_wins(key, first, rec)
            else:
                cluster = self.exact_clusters.setdefault(
                    first, {"kept": first, "dropped": [], "conflict": False}
                )
                cluster["dropped"].append(rid)
                if label != self.label[first]:
                    cluster["conflict"] = True
                    return "conflicting_labels", first
                return "duplicate", first
        if self.near is not None:
            rep = (
                self.index.add(rid, sig=sig)
                if sig is not None
                else self.index.add(rid, rec["text"])
            )
            if rep is not None:
                cluster = self.near_clusters.setdefault(rep, {"dropped": [], "grouped": []})
                if self.near.action == "drop" and label == self.label[rep]:
                    cluster["dropped"].append(rid)
                    return "near_duplicate", rep
                cluster["grouped"].append(rid)
                self.union(rid, rep)
        self.label[rid] = label
        if rec.get("group"):
            self.union(rid, "group:" + rec["group"])
        return None

    def _review_wins(self, key: int, first: str, rec: dict) -> tuple[str, str] | None:
        """An expert's reviewed copy of a text replaces the other sources' copies."""
        if not rec["id"].startswith(self.reviewed):
            return "superseded_by_review", first
        self.superseded.add(first)
        self.first[key], self.label[rec["id"]] = rec["id"], rec.get("label")
        if rec.get("group"):
            self.union(rec["id"], "group:" + rec["group"])
        return None

    def near_settings(self) -> dict | None:
        """The near-dup config as the manifest records it, with each script's settings."""
        if self.near is None:
            return None
        by_script = {script: vars(s) for script, s in self.settings.items()}
        return self.near.model_dump() | {"by_script": by_script}

    def conflicted(self) -> set[str]:
        """First copies whose exact cluster turned out to carry different labels."""
        return {c["kept"] for c in self.exact_clusters.values() if c["conflict"]}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression keeps later lookups short
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def cluster_rows(self) -> list[dict]:
        """dedup_clusters.jsonl: for each cluster, which record survived and why."""
        rows = []
        for first, c in self.exact_clusters.items():
            why = (
                "dropped whole: labels disagree between the copies"
                if c["conflict"]
                else "exact copies (same normalized text): the first occurrence is kept"
            )
            kept = None if c["conflict"] else first
            dropped = c["dropped"] + ([first] if c["conflict"] else [])
            rows.append({"kind": "exact", "kept": kept, "dropped": dropped, "why": why})
        if not self.near_clusters:
            return rows
        from verticalize.data.near_dedup import UNIT_NAMES

        how = "; ".join(
            f"{script}: Jaccard of {s.ngram}-grams of {UNIT_NAMES[script]} >= {s.threshold}"
            for script, s in self.settings.items()
        )
        why = (
            f"near-duplicates ({how}): the earliest record is kept; members with another "
            "label are kept in its group so they land in the same split"
        )
        for rep, c in self.near_clusters.items():
            rows.append({"kind": "near", "kept": rep, **c, "why": why})
        return rows
