"""Robustness (E4): the test set re-scored under each kind of character noise."""

from __future__ import annotations

from collections.abc import Callable

from verticalize.evaluate.noise import NOISE_KINDS, changed_share, noisy_copies


def robustness_table(
    score: Callable[[list[dict]], dict],
    records: list[dict],
    kinds: list[str],
    rate: float,
    seed: int,
    metrics: list[str],
    clean: dict | None = None,
) -> list[dict]:
    """One row per noise kind: the noisy metrics and their drop from the clean ones.

    `score(records)` returns a metrics dict; `clean` is its value on the clean records when
    already known. Row: {"noise", "rate", <metric>..., "drop" (of the first metric),
    "drops" (every metric), "changed_share" (character edit distance per clean character)}.
    """
    if not metrics:
        raise ValueError("name at least one metric to report")
    unknown = [k for k in kinds if k not in NOISE_KINDS]
    if unknown:
        raise ValueError(f"unknown noise kinds {unknown}; choose from {', '.join(NOISE_KINDS)}")
    clean = score(records) if clean is None else clean
    missing = [m for m in metrics if m not in clean]
    if missing:
        raise KeyError(f"the clean metrics lack {missing}; they have {sorted(clean)}")
    texts = [r["text"] for r in records]
    rows = []
    for kind in kinds:
        noisy = noisy_copies(records, kind, rate, seed)
        result = score(noisy)
        drops = {m: clean[m] - result[m] for m in metrics}
        rows.append(
            {
                "noise": kind,
                "rate": rate,
                **{m: result[m] for m in metrics},
                "drop": drops[metrics[0]],
                "drops": drops,
                "changed_share": changed_share(texts, [r["text"] for r in noisy]),
            }
        )
    return rows
