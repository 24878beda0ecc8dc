"""Causal-LM generation: conversations through the tokenizer's own chat template with the
loss on assistant tokens only, pre-training text, packing without cross-contamination,
length bucketing, and the loss / perplexity / greedy generation used by train and eval."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F

from verticalize.errors import ModelError
from verticalize.tasks.generation.chunked_loss import (
    final_hidden_states,
    linear_cross_entropy_sum,
    output_layer,
)

IGNORE = -100  # label of a position that is not trained on


def use_chat_template(tokenizer, configured: str | None, base_dir: Path | None) -> None:
    """Install `configured` (Jinja text, or a file next to the YAML) on the tokenizer, or
    check that the tokenizer brings its own; never a hand-written table."""
    if configured and "{" in configured:  # Jinja text
        tokenizer.chat_template = configured
    elif configured:
        path = Path(configured).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ModelError(
                f"generation.chat_template: {configured!r} is neither Jinja text nor a file "
                f"({path} does not exist). Fix: give the template text or the path of a .jinja file."
            )
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    elif not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"{getattr(tokenizer, 'name_or_path', 'the model')}: the tokenizer has no chat "
            "template, so conversations cannot be rendered. Fix: set generation.chat_template "
            "to a Jinja template (text or a .jinja file), or use an instruct model that has one."
        )


def render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_char_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and, per assistant turn, the characters the model must
    produce: from the end of the generation prompt to the end of that turn (its end-of-turn
    marker included, so the model learns to stop)."""
    full = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not (full.startswith(through) and through.startswith(prompt)):
            raise ModelError(
                "the chat template renders a conversation differently from its beginning, so "
                "assistant tokens cannot be located. Fix: set generation.chat_template to a "
                "template whose rendering of the first turns is a prefix of the whole."
            )
        spans.append((len(prompt), len(through)))
    return full, spans


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE where not trained; same length as input_ids
    truncated: bool = False

    @property
    def n_supervised(self) -> int:
        return sum(label != IGNORE for label in self.labels[1:])


def encode_conversation(tokenizer, messages: list[dict], max_length: int) -> Encoded:
    """Token ids of the rendered conversation; labels only on assistant characters."""
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [
        tok if any(s <= start < e for s, e in spans) else IGNORE
        for tok, (start, _) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], truncated)


def encode_text(tokenizer, text: str, block_size: int) -> list[Encoded]:
    """Pre-training text: every token trained on, end-of-text appended, split into blocks."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"] + [tokenizer.eos_token_id]
    return [
        Encoded(ids[i : i + block_size], ids[i : i + block_size])
        for i in range(0, len(ids), block_size)
    ]


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Everything before the last assistant turn, ending with the generation prompt."""
    text = render(tokenizer, messages[:-1], generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_token_ids(tokenizer) -> list[int]:
    """eos plus the template's end-of-turn token (found by rendering a one-word answer)."""
    ids = {tokenizer.eos_token_id}
    probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ANSWER"}]
    text = render(tokenizer, probe)
    after = text[text.rindex("ANSWER") + len("ANSWER") :]
    tail = tokenizer(after, add_special_tokens=False)["input_ids"]
    if tail:
        ids.add(tail[0])
    return sorted(i for i in ids if i is not None)


# ---------------------------------------------------------------- packing and batches


def pack(items: list[Encoded], block_size: int) -> list[list[Encoded]]:
    """First-fit-decreasing bins of at most `block_size` tokens (deterministic)."""
    order = sorted(range(len(items)), key=lambda i: -len(items[i].input_ids))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(items[i].input_ids)
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(block_size - n)
    return [[items[i] for i in sorted(b)] for b in bins]


def packed_row(seqs: list[Encoded]) -> dict[str, list[int]]:
    """One row of several sequences: position ids restart at 0 for each (so attention never
    crosses a boundary), and no sequence's first token is predicted from the one before."""
    ids, labels, positions = [], [], []
    for s in seqs:
        ids += s.input_ids
        labels += [IGNORE] + s.labels[1:]
        positions += list(range(len(s.input_ids)))
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def padded_row(seq: Encoded) -> dict[str, list[int]]:
    return {"input_ids": seq.input_ids, "labels": [IGNORE] + seq.labels[1:]}


def _sequences(row: dict[str, list[int]]) -> list[dict[str, list[int]]]:
    """The sequences of a packed row, cut where the position ids restart."""
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
    return [{k: v[a:b] for k, v in row.items()} for a, b in pairwise(starts)]


def balance_rows(rows: list[dict[str, list[int]]]) -> list[dict[str, list[int]]]:
    """The sequences of a batch's packed rows, spread over as many rows as evenly as
    possible (longest first, each to the shortest row), when that narrows the widest row.

    A batch is padded to its widest row, so rows of [512, 512, 53] tokens cost 1,536 where
    three rows of ~360 cost ~1,080. The batch holds the same sequences either way, and the
    step's loss is a sum over its supervised tokens, so only the padding changes (and the
    dropout masks, which follow the layout: hence rows move only when the widest row narrows
    by at least a tenth). Keeping the original rows unless the widest shrinks keeps every
    row within the block size."""
    if len(rows) < 2:
        return rows
    seqs = sorted((s for r in rows for s in _sequences(r)), key=lambda s: -len(s["input_ids"]))
    bins: list[list[dict]] = [[] for _ in rows]
    widths = [0] * len(rows)
    for s in seqs:
        b = widths.index(min(widths))
        bins[b].append(s)
        widths[b] += len(s["input_ids"])
    if max(widths) > 0.9 * max(len(r["input_ids"]) for r in rows):
        return rows
    return [{k: [x for s in b for x in s[k]] for k in rows[0]} for b in bins if b]


def make_lm_collate(pad_token_id: int):
    """Right-pad rows. Packed rows carry position_ids and no attention mask (transformers
    builds a block-diagonal causal mask from restarting positions), and a batch's sequences
    are first spread evenly over its rows (balance_rows); padded rows carry an attention
    mask."""

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        if "position_ids" in rows[0]:
            rows = balance_rows(rows)
        width = max(len(r["input_ids"]) for r in rows)
        n = len(rows)
        ids = torch.full((n, width), pad_token_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        packed = "position_ids" in rows[0]
        extra = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"])
            labels[i, :k] = torch.tensor(r["labels"])
            if packed:  # padding becomes its own short "sequence" that nothing attends to
                extra[i, :k] = torch.tensor(r["position_ids"])
                extra[i, k:] = torch.arange(width - k)
            else:
                extra[i, :k] = 1
        key = "position_ids" if packed else "attention_mask"
        return {"input_ids": ids, "labels": labels, key: extra}

    return collate


def lm_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits for a collated batch, one per input position."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    # no KV cache: transformers only derives the packed (block-diagonal) mask from restarting
    # position ids when there is no cache, and training has no use for one
    logits = model(**inputs, use_cache=False).logits
    return logits[:, -batch["input_ids"].shape[1] :]  # prompt tuning prepends virtual tokens


def lm_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(mean next-token cross-entropy over the labelled positions, how many there are).
    The output layer is applied only at the labelled positions, a chunk at a time (see
    chunked_loss); a model whose logits cannot be had that way gets the full logits."""
    labels = batch["labels"]
    # shift the labels, not the states: position i predicts the label at i + 1
    target = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
    keep = target != IGNORE
    n = int(keep.sum())
    head = output_layer(model)
    if head is None:
        logits = lm_logits(model, batch)
        loss = F.cross_entropy(logits[keep].float(), target[keep], reduction="sum")
        return loss / max(n, 1), n
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = final_hidden_states(model, head, inputs)
    loss = linear_cross_entropy_sum(hidden[keep], head.weight, target[keep])
    return loss / max(n, 1), n


@torch.no_grad()
def negative_log_likelihood(model, rows: list[dict], pad_token_id: int, max_tokens: int = 0):
    """(summed NLL, labelled tokens) over `rows`, in length-sorted batches of at most
    `max_tokens` padded tokens (default: about 1 GB of fp32 logits, tokens × vocabulary,
    which dominate memory: 5,000 tokens for SmolLM2, 1,000 for Gemma's 262k vocabulary)."""
    max_tokens = max_tokens or max(256, (256 << 20) // model.config.vocab_size)
    model.eval()
    collate = make_lm_collate(pad_token_id)
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    total, count, start = 0.0, 0, 0
    while start < len(order):
        end = start + 1
        while (
            end < len(order)
            and (end - start + 1) * len(rows[order[end]]["input_ids"]) <= max_tokens
        ):
            end += 1
        batch = collate([rows[i] for i in order[start:end]])
        mean, n = lm_loss(model, {k: v.to(device) for k, v in batch.items()})
        total += float(mean) * n
        count += n
        start = end
    return total, count


def generation_recipe(
    rows: list[dict], val_rows: list[dict], pad_token_id: int, label: str, order=None
):
    """The training loop's view of the task: next-token loss on labelled positions, each
    row weighted by its labelled tokens; validation loss and perplexity on `val_rows`."""
    from verticalize.evaluate.text_metrics import perplexity
    from verticalize.train.loop import Recipe

    def evaluate(model) -> dict:
        nll, n = negative_log_likelihood(model, val_rows, pad_token_id)
        return {"loss": nll / max(n, 1), "perplexity": perplexity(nll, n)}

    return Recipe(
        items=rows,
        collate=make_lm_collate(pad_token_id),
        loss=lm_loss,
        weight=lambda row: sum(x != IGNORE for x in row["labels"][1:]),
        evaluate=evaluate,
        order=order,
        label=label,
    )


@torch.no_grad()
def generate(
    model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """Greedy continuations of token-id prompts, left-padded in length-sorted batches."""
    model.eval()
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer)
    out: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        new = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
        )[:, width:]
        for row, i in enumerate(idx):
            tokens = new[row].tolist()
            cut = next((j for j, t in enumerate(tokens) if t in stops), len(tokens))
            out[i] = tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()
    return out
