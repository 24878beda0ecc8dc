"""E5 error analysis: misclassified test examples grouped by confusion pair, the correct
predictions the model was least sure of, and a Label Studio import of both so reviewers can
re-annotate them; their export, read back with `format: labelstudio`, feeds incremental
training (a run whose model.base is the previous run's model/ folder)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

TEXT_CHARS = 300
RELABEL_FILE = "relabel_labelstudio.json"
RELABEL_CONFIG = "relabel_config.xml"
MODEL_VERSION = "verticalize"


def error_analysis(
    records: list[dict],
    preds: list[str],
    confidences: list[float],
    probs: np.ndarray | None,
    labels: list[str],
    per_pair: int = 5,
    low_confidence: int = 10,
    with_text: bool = True,
) -> dict:
    """{"confusion_pairs": [{"gold", "pred", "count", "examples"}] (most frequent pair first;
    its examples the most confident mistakes first), "low_confidence_correct": [{"id", "text",
    "label", "confidence"}] (least confident first), "n_errors", "n"}.

    With `probs` (rows in `labels` order) each mistake also carries `gold_prob`, the
    probability the model gave the true label. `with_text=False` leaves the texts out
    (an encrypted test split)."""
    if not len(records) == len(preds) == len(confidences):
        raise ValueError("records, preds and confidences differ in length")
    index = {lab: i for i, lab in enumerate(labels)}

    def text_of(r: dict) -> str | None:
        return str(r.get("text", ""))[:TEXT_CHARS] if with_text else None

    pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
    correct: list[int] = []
    for i, (r, p) in enumerate(zip(records, preds, strict=True)):
        if r["label"] == p:
            correct.append(i)
        else:
            pairs[(r["label"], p)].append(i)

    def example(i: int) -> dict:
        ex = {"id": records[i]["id"], "text": text_of(records[i]), "confidence": _f(confidences[i])}
        gold = index.get(records[i]["label"])
        if probs is not None and gold is not None:
            ex["gold_prob"] = _f(probs[i][gold])
        return ex

    confusion = []
    for (gold, pred), idx in sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        idx = sorted(idx, key=lambda i: (-confidences[i], str(records[i]["id"])))
        confusion.append(
            {
                "gold": gold,
                "pred": pred,
                "count": len(idx),
                "examples": [example(i) for i in idx[:per_pair]],
            }
        )
    unsure = sorted(correct, key=lambda i: (confidences[i], str(records[i]["id"])))
    return {
        "confusion_pairs": confusion,
        "low_confidence_correct": [
            {
                "id": records[i]["id"],
                "text": text_of(records[i]),
                "label": records[i]["label"],
                "confidence": _f(confidences[i]),
            }
            for i in unsure[:low_confidence]
        ],
        "n_errors": len(records) - len(correct),
        "n": len(records),
    }


def labelstudio_tasks(
    records: list[dict],
    preds: list[str],
    confidences: list[float],
    labels: list[str],
    from_name: str = "label",
    to_name: str = "text",
    low_confidence: int = 10,
) -> list[dict]:
    """Label Studio import tasks (a JSON list) for every misclassified record (most confident
    mistake first) and the `low_confidence` least sure correct ones; the model's label rides
    along as a pre-annotation (`predictions`) the reviewer accepts or corrects."""
    unknown = sorted({p for p in preds if p not in labels})
    if unknown:
        raise ValueError(f"predicted labels {unknown} are not in the label set {labels}")
    wrong = [i for i, r in enumerate(records) if r["label"] != preds[i]]
    right = [i for i, r in enumerate(records) if r["label"] == preds[i]]
    wrong.sort(key=lambda i: (-confidences[i], str(records[i]["id"])))
    right.sort(key=lambda i: (confidences[i], str(records[i]["id"])))
    tasks = []
    for i in wrong + right[:low_confidence]:
        r = records[i]
        tasks.append(
            {
                "data": {"text": r["text"], "record_id": r["id"], "gold": r["label"]},
                "predictions": [
                    {
                        "model_version": MODEL_VERSION,
                        "score": _f(confidences[i]),
                        "result": [
                            {
                                "from_name": from_name,
                                "to_name": to_name,
                                "type": "choices",
                                "value": {"choices": [preds[i]]},
                            }
                        ],
                    }
                ],
            }
        )
    return tasks


def labelstudio_config(labels: list[str], from_name: str = "label", to_name: str = "text") -> str:
    """The labelling interface matching `labelstudio_tasks`: the text and one choice per label."""
    choices = "\n".join(f"    <Choice value={quoteattr(str(lab))}/>" for lab in labels)
    return (
        "<View>\n"
        f'  <Text name={quoteattr(to_name)} value="$text"/>\n'
        f"  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} "
        'choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def write_relabel(out_dir, tasks: list[dict], labels: list[str]) -> dict:
    """relabel_labelstudio.json (tasks to import) and relabel_config.xml (the labelling
    interface) in `out_dir`: {"file", "config", "n"} with absolute paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    file, config = out / RELABEL_FILE, out / RELABEL_CONFIG
    file.write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    config.write_text(labelstudio_config(labels), encoding="utf-8")
    return {"file": str(file), "config": str(config), "n": len(tasks)}


def _f(x) -> float:
    return round(float(x), 6)


def eval_error_analysis(
    test: list[dict],
    preds: list[str],
    probs: np.ndarray,
    labels: list[str],
    out_dir,
    sensitive: bool = False,
) -> dict:
    """The eval stage's `report["error_analysis"]`: `error_analysis` (confidence = the top
    probability) plus "relabel": `write_relabel`'s {"file", "config", "n"}. An encrypted
    (sensitive) test split gets no texts in the report and no task file."""
    confidences = [float(c) for c in probs.max(axis=1)] if len(test) else []
    analysis = error_analysis(test, preds, confidences, probs, labels, with_text=not sensitive)
    if sensitive:
        relabel = {"file": None, "config": None, "n": 0, "skipped": "data.sensitive lists test"}
    else:
        relabel = write_relabel(
            out_dir, labelstudio_tasks(test, preds, confidences, labels), labels
        )
    return {**analysis, "relabel": relabel}
