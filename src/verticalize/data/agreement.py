"""Inter-annotator agreement for records labelled by several people (D7).

Krippendorff's alpha (nominal) for the whole set, Cohen's kappa for each pair of annotators,
a per-annotator and per-item view, the items to send back for review, and a seeded
cross-review sample. Undefined statistics (a single label in use, no shared items) are None.
"""

from __future__ import annotations

import math
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations

from verticalize.config import AgreementConfig
from verticalize.errors import DataError

TIE = "annotator_tie"


def coincidence_matrix(units: list[list[str | None]]) -> dict[tuple[str, str], float]:
    """Krippendorff's coincidences o[c, k]: each unit with m ≥ 2 values adds 1 / (m - 1) for
    every ordered pair of its values from different annotators. None is a missing value."""
    matrix: dict[tuple[str, str], float] = defaultdict(float)
    for unit in units:
        counts = Counter(v for v in unit if v is not None)
        m = sum(counts.values())
        if m < 2:
            continue  # a lone value has nothing to agree with
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                matrix[c, k] += n_c * (n_k - (c == k)) / (m - 1)
    return dict(matrix)


def krippendorff_alpha_nominal(units: list[list[str | None]]) -> float:
    """Alpha for nominal labels; `units` holds one list per item, one value (or None) per
    annotator. NaN when it is undefined: fewer than two pairable values or one label only."""
    matrix = coincidence_matrix(units)
    totals: Counter = Counter()
    for (c, _), o in matrix.items():
        totals[c] += o
    n = sum(totals.values())
    expected = n * n - sum(n_c * n_c for n_c in totals.values())  # Σ_{c≠k} n_c n_k
    if n < 2 or expected <= 0:
        return math.nan
    disagreements = sum(o for (c, k), o in matrix.items() if c != k)
    return 1.0 - (n - 1) * disagreements / expected


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two annotators over the same items; NaN when undefined (no items, or
    both gave one and the same label throughout)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs label lists of one length, got {len(a)} and {len(b)}")
    if not a or len(set(a) | set(b)) < 2:
        return math.nan
    from sklearn.metrics import cohen_kappa_score  # scikit-learn takes a second to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(list(a), list(b)))


def resolve_label(annotations: list[dict]) -> tuple[str | None, str | None]:
    """(the label most annotators gave, None), or (None, "annotator_tie") when two labels
    share the top count, or (None, "no_annotations")."""
    counts = Counter(a["label"] for a in annotations if a.get("label") is not None)
    if not counts:
        return None, "no_annotations"
    (top, n_top), *rest = counts.most_common()
    if rest and rest[0][1] == n_top:
        return None, TIE
    return top, None


def _labels_by_annotator(record: dict) -> dict[str, str]:
    """{annotator: label} of one record; the last label wins when an annotator repeats."""
    labels: dict[str, str] = {}
    for i, ann in enumerate(record["annotations"]):
        if not isinstance(ann, dict) or not ann.get("annotator"):
            raise DataError(
                f"record {record.get('id')} ({record.get('source')} line {record.get('line')}): "
                f"annotation #{i + 1} is {ann!r}; each needs {{'annotator': ..., 'label': ...}}"
            )
        if ann.get("label") is not None:
            labels[str(ann["annotator"])] = str(ann["label"])
    return labels


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def agreement_report(records: list[dict], cfg: AgreementConfig, seed: int) -> dict:
    """The agreement of the records that carry `annotations`: overall alpha against
    `cfg.alpha_target`, pairwise kappa, per annotator and per item, the items whose share
    agreeing with the majority is under `cfg.item_threshold` (ties included), and a
    `cfg.review_share` cross-review sample of item ids that depends only on the ids and seed."""
    items = {r["id"]: _labels_by_annotator(r) for r in records if r.get("annotations")}
    items = {rid: labels for rid, labels in items.items() if labels}
    annotators = sorted({name for labels in items.values() for name in labels})
    alpha = krippendorff_alpha_nominal([[lab.get(a) for a in annotators] for lab in items.values()])

    pairs, kappas = [], defaultdict(list)
    for a, b in combinations(annotators, 2):
        shared = [lab for lab in items.values() if a in lab and b in lab]
        kappa = cohen_kappa([lab[a] for lab in shared], [lab[b] for lab in shared])
        pairs.append({"a": a, "b": b, "n_items": len(shared), "kappa": _or_none(kappa)})
        if not math.isnan(kappa):
            kappas[a].append(kappa)
            kappas[b].append(kappa)

    per_item, review = [], []
    for rid, labels in items.items():
        counts = Counter(labels.values())
        label, reason = resolve_label([{"label": v} for v in labels.values()])
        share = counts.most_common(1)[0][1] / len(labels)
        per_item.append(
            {
                "id": rid,
                "majority": label,
                "reason": reason,
                "agreement": round(share, 6),
                "n_annotators": len(labels),
                "labels": dict(sorted(counts.items())),
            }
        )
        if reason == TIE or share < cfg.item_threshold:
            review.append(rid)

    ids = sorted(items)
    n_sample = min(len(ids), math.ceil(cfg.review_share * len(ids)))
    return {
        "n_items": len(items),
        "n_annotators": len(annotators),
        "n_annotations": sum(len(lab) for lab in items.values()),
        "alpha": _or_none(alpha),
        "alpha_target": cfg.alpha_target,
        "passed": not math.isnan(alpha) and alpha >= cfg.alpha_target,
        "pairwise_kappa": pairs,
        "annotators": [_annotator(a, items, kappas[a]) for a in annotators],
        "items": per_item,
        "review": review,
        "cross_review_sample": sorted(random.Random(seed).sample(ids, n_sample)),
    }


def _annotator(name: str, items: dict[str, dict[str, str]], kappas: list[float]) -> dict:
    """How often `name` agrees with the majority of the other annotators, where they have one."""
    labelled = [lab for lab in items.values() if name in lab]
    compared = agreed = 0
    for labels in labelled:
        others = [{"label": v} for who, v in labels.items() if who != name]
        majority, _ = resolve_label(others)
        if majority is not None:
            compared += 1
            agreed += labels[name] == majority
    return {
        "annotator": name,
        "items": len(labelled),
        "compared": compared,
        "agreement_with_others": round(agreed / compared, 6) if compared else None,
        "mean_kappa": round(sum(kappas) / len(kappas), 6) if kappas else None,
    }
