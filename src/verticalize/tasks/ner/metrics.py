"""Entity-level NER metrics (E1 for token classification), as seqeval's strict mode counts them.

An entity is a hashable tuple whose first element is its type — (type, first word, last word + 1)
or (type, char_start, char_end) — and counts as correct only when gold and prediction hold the
same tuple in the same sentence. Types are the union of gold and predicted types, sorted; a
division by zero gives 0.0; macro = unweighted mean over those types; micro F1 comes from the
micro precision and recall.
"""

from __future__ import annotations

from verticalize.data.tags import entities


def _div(a: int | float, b: int | float) -> float:
    return float(a) / b if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def entity_scores(gold: list[list[tuple]], pred: list[list[tuple]]) -> dict:
    """Precision, recall and F1 of entities (micro, macro, per type) over aligned sentences."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    # (sentence, entity) pairs: a sentence's duplicate entities count once, as in seqeval
    gold_set = {(i, e) for i, sent in enumerate(gold) for e in sent}
    pred_set = {(i, e) for i, sent in enumerate(pred) for e in sent}
    correct = gold_set & pred_set
    types = sorted({str(e[0]) for _, e in gold_set | pred_set})
    per_type: dict[str, dict] = {}
    for t in types:
        n_g = sum(1 for _, e in gold_set if str(e[0]) == t)
        n_p = sum(1 for _, e in pred_set if str(e[0]) == t)
        n_c = sum(1 for _, e in correct if str(e[0]) == t)
        p, r = _div(n_c, n_p), _div(n_c, n_g)
        per_type[t] = {
            "precision": p,
            "recall": r,
            "f1": _f1(p, r),
            "support": n_g,
            "predicted": n_p,
        }
    p_micro = _div(len(correct), len(pred_set))
    r_micro = _div(len(correct), len(gold_set))
    scores = list(per_type.values())
    return {
        "entity_precision_micro": p_micro,
        "entity_recall_micro": r_micro,
        "entity_f1_micro": _f1(p_micro, r_micro),
        "entity_precision_macro": _div(sum(s["precision"] for s in scores), len(scores)),
        "entity_recall_macro": _div(sum(s["recall"] for s in scores), len(scores)),
        "entity_f1_macro": _div(sum(s["f1"] for s in scores), len(scores)),
        "per_type": per_type,
        "n_gold": len(gold_set),
        "n_pred": len(pred_set),
        "n_correct": len(correct),
    }


def tag_scores(gold_tags: list[list[str]], pred_tags: list[list[str]], scheme: str) -> dict:
    """entity_scores over the strict entities of word tags in `scheme` ("bio" or "bioes"),
    plus token_accuracy: the share of words whose predicted tag equals the gold tag."""
    if len(gold_tags) != len(pred_tags) or any(
        len(g) != len(p) for g, p in zip(gold_tags, pred_tags, strict=True)
    ):
        raise ValueError("gold and predicted tags differ in the number of sentences or words")
    out = entity_scores(
        [entities(t, scheme) for t in gold_tags], [entities(t, scheme) for t in pred_tags]
    )
    out["token_accuracy"] = token_accuracy(gold_tags, pred_tags)
    return out


def token_accuracy(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> float:
    """The share of words whose predicted tag equals the gold tag."""
    same = sum(
        g == p
        for gs, ps in zip(gold_tags, pred_tags, strict=True)
        for g, p in zip(gs, ps, strict=True)
    )
    return _div(same, sum(len(t) for t in gold_tags))
