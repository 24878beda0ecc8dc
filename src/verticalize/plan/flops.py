"""Training FLOPs (P3): ≈ 6 · params · tokens for full fine-tuning, less for frozen layers,
LoRA and prompt tuning.

Convention (multiply-add = 2 FLOPs), per token:
- matmul parameters N = all weights of dimension ≥ 2 except input-embedding lookups (a tied
  LM head counts once, as a matmul); attention adds 4 · s · h per block (QKᵀ and AV).
- forward 2N; backward = activation gradients (2 × the matmul parameters at or above the
  lowest trainable parameter: below it no gradient flows) + weight gradients (2 × the
  trainable matmul parameters). Full fine-tuning: 6N; LoRA: 2N + 2N + 2·adapters;
  head only: 2N + ~4·head.
- gradient checkpointing recomputes the forward once more.
Tokens are real tokens after truncation (padding not counted).
"""

from __future__ import annotations

from torch import nn

from verticalize.models.architecture import (
    lowest_trainable,
    model_dims,
    positions,
    transformer_blocks,
)


def _is_lookup(model: nn.Module) -> set[int]:
    """Parameters used only as embedding lookups (not also as a tied output matmul)."""
    out_emb = None
    get_out = getattr(model, "get_output_embeddings", None)
    if callable(get_out):
        head = get_out()
        out_emb = id(head.weight) if head is not None else None
    return {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, nn.Embedding) and id(m.weight) != out_emb
    }


def flops_per_token(
    model: nn.Module, seq_len: int, gradient_checkpointing: bool = False
) -> dict[str, float]:
    """Forward, backward and total training FLOPs per token of `model` as adapted."""
    d = model_dims(model)
    blocks = transformer_blocks(model, d.layers)
    where = positions(model, blocks)
    lookups = _is_lookup(model)
    params = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in lookups]
    seen: set[int] = set()
    unique = [p for p in params if not (id(p) in seen or seen.add(id(p)))]
    lowest = lowest_trainable(model, blocks)
    matmul = sum(p.numel() for p in unique)
    above = sum(p.numel() for p in unique if where.get(id(p), d.layers) >= max(lowest, 0))
    train_w = sum(p.numel() for p in unique if p.requires_grad)
    attention = 4 * seq_len * d.hidden  # per block, forward
    blocks_with_grad = max(0, d.layers - max(lowest, 0)) if lowest <= d.layers else 0
    forward = 2 * matmul + attention * d.layers
    backward = 2 * above + 2 * train_w + 2 * attention * blocks_with_grad
    if gradient_checkpointing:
        forward *= 2
    return {
        "matmul_params": matmul,
        "forward": float(forward),
        "backward": float(backward),
        "total": float(forward + backward),
    }


def train_flops(model: nn.Module, tokens: int, seq_len: int, gradient_checkpointing=False) -> float:
    """FLOPs of training on `tokens` tokens (all epochs)."""
    return flops_per_token(model, seq_len, gradient_checkpointing)["total"] * tokens
