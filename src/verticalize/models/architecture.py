"""What the estimates need to know of a model's architecture: its dimensions, its stack of
transformer blocks, where the lowest trainable parameter sits, and how many activation
elements a block keeps per token (the formula is in verticalize.models.memory)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class Dims:
    """What the activation count needs from a transformers config."""

    hidden: int
    layers: int
    heads: int
    kv: int  # key/value width (grouped-query attention makes it smaller than hidden)
    intermediate: int
    vocab: int
    gated: bool  # SwiGLU-style MLP (gate, up, down)
    attention_dropout: float
    hidden_dropout: float


def backbone_config(model: nn.Module):
    """The transformers config of a model, a PEFT wrapper, or a TokenTagger's backbone."""
    inner = getattr(model, "backbone", model)
    return inner.config


def model_dims(model: nn.Module) -> Dims:
    c = backbone_config(model)
    c = getattr(c, "text_config", None) or c
    h, heads = c.hidden_size, c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or h // heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    act = str(getattr(c, "hidden_act", None) or getattr(c, "hidden_activation", "gelu"))
    return Dims(
        hidden=h,
        layers=c.num_hidden_layers,
        heads=heads,
        kv=kv_heads * head_dim,
        intermediate=getattr(c, "intermediate_size", None) or 4 * h,
        vocab=c.vocab_size,
        gated=act in ("silu", "swish", "gelu_pytorch_tanh") or hasattr(c, "rms_norm_eps"),
        attention_dropout=float(
            getattr(c, "attention_probs_dropout_prob", None) or getattr(c, "attention_dropout", 0)
        ),
        hidden_dropout=float(getattr(c, "hidden_dropout_prob", None) or 0.0),
    )


def transformer_blocks(model: nn.Module, n_layers: int) -> list[nn.Module]:
    """The transformer blocks, in order (the largest ModuleList of `n_layers` modules)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return list(module)
    return []


def _lora_modules(block: nn.Module) -> list[tuple[int, int]]:
    """(in_features, rank) of each LoRA-wrapped Linear in a block."""
    out = []
    for m in block.modules():
        lora_a = getattr(m, "lora_A", None)
        if isinstance(lora_a, nn.ModuleDict) and len(lora_a):
            first = next(iter(lora_a.values()))
            out.append((first.in_features, first.out_features))
    return out


def _base_weights_train(block: nn.Module) -> bool:
    return any(
        p.requires_grad for n, p in block.named_parameters() if "lora_" not in n and p.dim() > 1
    )


def positions(model: nn.Module, blocks: list[nn.Module]) -> dict[int, int]:
    """id(parameter) → its place in the stack: -1 embeddings (virtual tokens included),
    k for block k; parameters not listed sit above the blocks (final norm, head)."""
    where: dict[int, int] = {}
    for k, block in enumerate(blocks):
        for p in block.parameters():
            where[id(p)] = k
    for m in model.modules():
        if isinstance(m, nn.Embedding) or type(m).__name__.endswith("Embeddings"):
            for p in m.parameters():
                where.setdefault(id(p), -1)
    return where


def lowest_trainable(model: nn.Module, blocks: list[nn.Module]) -> int:
    """The lowest place (as in `positions`) holding a trainable parameter; len(blocks) when
    only the head trains."""
    where = positions(model, blocks)
    places = [where.get(id(p), len(blocks)) for p in model.parameters() if p.requires_grad]
    return min(places, default=len(blocks))


def activation_elements_per_token(model: nn.Module, seq_len: int, saved: bool = True) -> float:
    """Elements autograd keeps per token of a training batch, summed over the blocks.
    `saved=False` counts the forward's working set instead: a block whose weights are frozen
    saves less, but its temporaries are as large as a trained block's saved tensors."""
    d = model_dims(model)
    blocks = transformer_blocks(model, d.layers)
    lowest = max(lowest_trainable(model, blocks), 0)
    core = (5.33 if d.hidden_dropout > 0 else 5.0) * d.hidden + 2 * d.kv
    core += (3 if d.gated else 1) * d.intermediate
    if d.attention_dropout > 0:
        core += 3 * d.heads * seq_len
    total = 2.0 * d.hidden  # embeddings output, final norm
    for block in blocks[lowest:]:
        total += core
        if not saved or _base_weights_train(block):
            total += 3 * d.hidden + d.intermediate
        total += sum(1.75 * fan_in + r for fan_in, r in _lora_modules(block))
    return total
