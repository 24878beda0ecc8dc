"""Entity-level precision and recall of PII detection (D5) on tests/data/pii_labelled.jsonl.

A hit needs the exact span and kind. Misses and false alarms go to stderr (the set is
synthetic, so printing them leaks nothing). Throughput: texts per second over repeated
passes of the whole set. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from verticalize.data.pii import detect_pii, score_detection
from verticalize.runfolder import read_jsonl

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_labelled.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=LABELLED)
    ap.add_argument("--repeats", type=int, default=20, help="passes over the set for timing")
    args = ap.parse_args()
    examples = read_jsonl(args.data)
    score = score_detection(examples)
    for err in score.pop("errors"):
        text = examples[err["line"] - 1]["text"]
        s, e = err["span"]
        print(f"{err['error']} {err['kind']:<9} line {err['line']}: {text[s:e]!r}", file=sys.stderr)
    texts = [ex["text"] for ex in examples]
    started = time.perf_counter()
    for _ in range(args.repeats):
        for text in texts:
            detect_pii(text)
    seconds = time.perf_counter() - started
    score["texts_per_s"] = round(len(texts) * args.repeats / seconds, 1)
    score["chars_per_s"] = round(sum(map(len, texts)) * args.repeats / seconds)
    print(json.dumps(score, ensure_ascii=False))


if __name__ == "__main__":
    main()
