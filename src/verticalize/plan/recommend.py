"""Method, precision, batch size, accumulation and learning rate for this model, this data
and this machine (P3), each with the rule that chose it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

LARGE_MODEL = 100_000_000  # parameters: above this, full fine-tuning rarely pays on CPU
FEW_EXAMPLES = 300  # below this, full fine-tuning of every weight overfits
EFFECTIVE_BATCH = 32  # examples per optimizer step: enough steps per epoch on small data
BASE_LR = {"full": 1e-4, "freeze": 2e-4, "layer_reduction": 1e-4, "lora": 8e-4}
BASE_LR_PROMPT = 6e-3  # prompt and prefix tuning train a few embeddings: much larger steps


@dataclass
class Recommendation:
    method: str
    precision: str
    batch_size: int
    grad_accum_steps: int
    lr: float
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def bf16_device() -> str | None:
    """The name of a CUDA GPU that trains in bf16, or None."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.cuda.get_device_name(0)
    return None


def choose_method(params: int, examples: int, full_fits: bool, configured: str) -> tuple[str, str]:
    if not full_fits:
        return "lora", (
            "full fine-tuning does not fit in memory; LoRA keeps gradients and AdamW states "
            "for the adapters only"
        )
    if params > LARGE_MODEL:
        return "lora", (
            f"{params / 1e6:.0f}M parameters (> {LARGE_MODEL / 1e6:.0f}M): LoRA trains well under "
            "1% of them, with a fraction of the gradient and optimizer memory"
        )
    if examples < FEW_EXAMPLES:
        return "lora", (
            f"{examples} training examples (< {FEW_EXAMPLES}): few adapter weights overfit less "
            "than all weights"
        )
    if configured in ("prompt_tuning", "prefix_tuning", "layer_reduction"):
        return configured, f"kept the configured {configured}: the model is small enough for it"
    return "full", (
        f"a small model ({params / 1e6:.1f}M parameters) and {examples} examples: full "
        "fine-tuning fits and usually scores best"
    )


def choose_precision() -> tuple[str, str]:
    gpu = bf16_device()
    if gpu:
        return "bf16", f"{gpu} supports bf16: half the activation memory, faster matmuls"
    return "fp32", (
        "no CUDA GPU with bf16: on CPU, bf16 autocast is slow without AMX and fp16 has no "
        "CPU kernels, so fp32"
    )


def choose_batch(fits: Callable[[int], bool], examples: int) -> tuple[int, int, str]:
    """Largest power of two ≤ 32 (and ≤ the data) that fits; accumulate to ~32 per step."""
    batch = 1
    while batch * 2 <= min(EFFECTIVE_BATCH, max(examples, 1)) and fits(batch * 2):
        batch *= 2
    accum = max(1, -(-EFFECTIVE_BATCH // batch))
    why = (
        f"batch {batch}: the largest power of two ≤ {EFFECTIVE_BATCH} (and ≤ the examples) whose "
        "estimate fits the memory budget; "
        + (
            f"× {accum} accumulation = effective batch {batch * accum}"
            if accum > 1
            else f"no accumulation needed for an effective batch of ~{EFFECTIVE_BATCH}"
        )
    )
    if not fits(batch):
        why = "even batch 1 does not fit the memory budget: use LoRA and a shorter max_length"
    return batch, accum, why


def choose_lr(method: str, examples: int, layers: int) -> tuple[float, list[str]]:
    lr = BASE_LR_PROMPT if method in ("prompt_tuning", "prefix_tuning") else BASE_LR[method]
    why = [f"learning rate starts at {lr:g} for {method}"]
    if examples < 1_000_000:
        lr /= 2
        why.append(
            f"{examples:,} examples (< 1M): halved, so the few steps keep what pre-training learned"
        )
    if layers > 20:
        lr /= 2
        why.append(f"{layers} layers (> 20): halved, updates compound through a deep stack")
    return lr, why


def recommend(
    params: int,
    layers: int,
    examples: int,
    configured_method: str,
    full_fits: bool,
    fits: Callable[[str, int], bool],
) -> Recommendation:
    """`fits(method, batch)` says whether a method at a batch size fits the memory budget."""
    method, why_method = choose_method(params, examples, full_fits, configured_method)
    precision, why_precision = choose_precision()
    batch, accum, why_batch = choose_batch(lambda b: fits(method, b), examples)
    lr, why_lr = choose_lr(method, examples, layers)
    reasons = [f"method {method}: {why_method}", f"precision {precision}: {why_precision}"]
    reasons += [why_batch, *why_lr, f"lr {lr:g}"]
    return Recommendation(method, precision, batch, accum, lr, reasons)
