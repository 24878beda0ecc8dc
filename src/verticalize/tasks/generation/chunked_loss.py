"""The causal-LM loss without full-vocabulary logits for every position (T9).

The model runs up to its final hidden states; the output layer (lm_head) is applied here,
only at the supervised positions and a chunk of positions at a time. In training, a custom
autograd function computes each chunk's gradient in the forward pass (as Liger Kernel's
fused linear cross-entropy does), so no chunk's logits outlive the chunk: the step holds
(positions × hidden) gradients instead of (positions × vocabulary) logits, log-softmax and
their gradient. Same math as `F.cross_entropy` on the full logits, up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHUNK = 1024  # positions per chunk: 1024 × 49k vocabulary × 4 bytes ≈ 200 MB of fp32 logits

# configuration fields by which a model transforms its logits after lm_head (Gemma 2's
# soft-capping, Cohere's and Granite's scaling): those models take the full-logits path
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class LinearCrossEntropy(torch.autograd.Function):
    """sum over rows of cross_entropy(hidden @ weight.T, targets), chunk by chunk; the
    gradients are computed in forward and only scaled in backward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor):
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], CHUNK):
            h, t = hidden[s : s + CHUNK], targets[s : s + CHUNK]
            logits = (h @ weight.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            rows = torch.arange(t.shape[0], device=t.device)
            total += (lse - logits[rows, t]).sum()
            # d(loss)/d(logits) = softmax - one-hot, computed in place over the logits
            grad = logits.sub_(lse[:, None]).exp_()
            grad[rows, t] -= 1.0
            grad = grad.to(h.dtype)
            grad_hidden[s : s + CHUNK] = grad @ weight.to(h.dtype)
            if grad_weight is not None:
                grad_weight += (grad.T @ h).to(weight.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_output.to(grad_hidden.dtype)
        grad_w = None if grad_weight is None else grad_weight * scale.to(grad_weight.dtype)
        return grad_hidden * scale, grad_w, None


def linear_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Summed next-token cross-entropy of (positions × hidden) states through an output
    layer of `weight` (vocabulary × hidden), without materialising all positions' logits."""
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return LinearCrossEntropy.apply(hidden, weight, targets)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], CHUNK):
        logits = (hidden[s : s + CHUNK] @ weight.T).float()
        total += F.cross_entropy(logits, targets[s : s + CHUNK], reduction="sum")
    return total


def _inner(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP
        model = model.module
    return model


def output_layer(model: nn.Module) -> nn.Linear | None:
    """The model's lm_head when the loss may be computed from the hidden states through it:
    a plain bias-free Linear whose output the model does not transform, held whole by this
    process (not an FSDP shard)."""
    inner = _inner(model)
    get = getattr(inner, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if type(head) is not nn.Linear or head.bias is not None:
        return None
    if type(head.weight).__name__ == "DTensor":  # sharded (FSDP2): gathered only in forward
        return None
    config = getattr(inner, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_TRANSFORMS):
        return None
    return head


def final_hidden_states(model: nn.Module, head: nn.Linear, inputs: dict) -> torch.Tensor:
    """The states the model feeds its lm_head, one per input position: the model runs
    through its own forward (adapters, prompt tuning and DDP included) while a pre-hook
    takes lm_head's input and hands it an empty slice, so no logits are computed."""
    taken: list[torch.Tensor] = []

    def take(module, args):
        taken.append(args[0])
        return (args[0][..., :0, :],)

    handle = head.register_forward_pre_hook(take)
    try:
        # no KV cache: transformers only derives the packed (block-diagonal) mask from
        # restarting position ids when there is no cache, and training has no use for one
        model(**inputs, use_cache=False)
    finally:
        handle.remove()
    return taken[0][:, -inputs["input_ids"].shape[1] :]  # prompt tuning prepends tokens
