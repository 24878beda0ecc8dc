"""What a prediction looks like on the page: every label with its probability, best first,
and a text cut into plain and entity pieces (the template escapes every piece)."""

from __future__ import annotations

import json


def score_rows(result: dict) -> list[tuple[str, float]]:
    """(label, probability) for every label of a classification result, best first."""
    probs = result.get("probs") or {result.get("label", "?"): result.get("score", 0.0)}
    return sorted(((str(k), float(v)) for k, v in probs.items()), key=lambda r: (-r[1], r[0]))


def ner_segments(text: str, entities: list[dict]) -> list[dict]:
    """`text` as consecutive pieces {"text", "type", "score"} (type None between entities),
    from entities with character offsets; overlapping or out-of-range spans are skipped."""
    pieces, at = [], 0
    for ent in sorted(entities, key=lambda e: (e["start"], -e["end"])):
        start, end = int(ent["start"]), int(ent["end"])
        if start < at or end <= start or end > len(text):
            continue
        if start > at:
            pieces.append({"text": text[at:start], "type": None, "score": None})
        pieces.append({"text": text[start:end], "type": ent["type"], "score": ent.get("score")})
        at = end
    if at < len(text):
        pieces.append({"text": text[at:], "type": None, "score": None})
    return pieces


def result_view(text: str, result: dict) -> dict:
    """The template context for one prediction, by its shape (NER, classification, other)."""
    if "entities" in result:
        return {"kind": "ner", "pieces": ner_segments(text, result["entities"]), "raw": result}
    if "label" in result:
        return {"kind": "classification", "rows": score_rows(result), "raw": result}
    return {"kind": "other", "json": json.dumps(result, ensure_ascii=False, indent=2)}
