"""Entity-level precision and recall of PII detection (D5), per kind, on three labelled sets:

- tests/data/pii_labelled.jsonl: the first set (ID cards, phones, e-mail, cards, names…);
- tests/data/pii_cases.jsonl: built by bench/pii_cases.py — the kinds of issue 20 (addresses,
  plates, names before a title, SSN, IPv6, IDN e-mail, HK / Macau / Taiwan IDs, credit codes)
  in several formats, positions and languages, with near-miss values and hard negatives;
- tests/data/pii_heldout.jsonl: hand-written sentences in other shapes, scored once before
  the detectors were tuned on pii_cases (see the report of issue 20).

A hit needs the exact span and kind. Misses and false alarms go to stderr (the sets are
synthetic, so printing them leaks nothing). Throughput: texts per second over repeated
passes. Last stdout line: one JSON object ("all" = the three sets together).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from verticalize.data.pii import detect_pii, score_detection
from verticalize.runfolder import read_jsonl

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SETS = ("pii_labelled.jsonl", "pii_cases.jsonl", "pii_heldout.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="*", default=[DATA / n for n in SETS])
    ap.add_argument("--repeats", type=int, default=5, help="passes over the sets for timing")
    args = ap.parse_args()
    by_set, examples = {}, []
    for path in args.data:
        rows = read_jsonl(path)
        examples += rows
        score = score_detection(rows)
        for err in score.pop("errors"):
            text = rows[err["line"] - 1]["text"]
            s, e = err["span"]
            print(
                f"{path.name} {err['error']} {err['kind']:<10} line {err['line']}: {text[s:e]!r}",
                file=sys.stderr,
            )
        by_set[path.stem] = {k: score[k] for k in ("precision", "recall", "n_entities", "n_texts")}
        by_set[path.stem]["per_kind"] = _short(score["per_kind"])
    score = score_detection(examples)
    score.pop("errors")
    score["per_kind"] = _short(score["per_kind"])
    score["targets"] = {"precision": 0.97, "recall": 0.95}
    score["below_target"] = sorted(
        k for k, v in score["per_kind"].items() if v["precision"] < 0.97 or v["recall"] < 0.95
    )
    score["sets"] = by_set
    texts = [ex["text"] for ex in examples]
    started = time.perf_counter()
    for _ in range(args.repeats):
        for text in texts:
            detect_pii(text)
    seconds = time.perf_counter() - started
    score["texts_per_s"] = round(len(texts) * args.repeats / seconds, 1)
    score["chars_per_s"] = round(sum(map(len, texts)) * args.repeats / seconds)
    print(json.dumps(score, ensure_ascii=False))


def _short(per_kind: dict) -> dict:
    return {
        k: {"precision": v["precision"], "recall": v["recall"], "n": v["tp"] + v["fn"]}
        for k, v in per_kind.items()
    }


if __name__ == "__main__":
    main()
