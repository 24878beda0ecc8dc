"""Peak training memory, estimated before training (P3, T9), and the guard that refuses a
run that will not fit.

peak RSS = runtime + weights + fp32 gradients + AdamW states (2 × trainable)
           + ALLOCATOR_FACTOR × the blocks' working set of one micro-batch
           + max(a causal LM's chunk of logits in a training step, an evaluation batch's
                 transient)

The working set is an analytic count per token per transformer block (h hidden, kv key/value
width, i intermediate, a heads, s sequence length, r LoRA rank), checked against what
autograd saves (`torch.autograd.graph.saved_tensors_hooks`) on BERT (MiniLM) and Llama
(SmolLM2) blocks:

    every block at or above the lowest trainable parameter   5.33·h + 2·kv + i  (3·i gated MLP)
    + attention with dropout in training                     3·a·s  (SDPA's math kernel:
                                                             probabilities, mask, output)
    + the inputs of q/k/v, o, up/gate and down               3·h + i
    + each LoRA-wrapped Linear                               1.75·in_features + r

A frozen block saves less than `3·h + i`, but the allocator keeps its temporaries, so the
working set counts it as trained. Tensors of a few MB are served from glibc's heap, which
keeps freed memory; tensors above its mmap threshold (32 MB: LM logits, evaluation attention
maps) are returned at once, so they count only while they live. ALLOCATOR_FACTOR and
FIRST_STEP_BYTES are fitted to peak RSS (VmHWM) of real train-stage runs on a 2-core CPU
machine (MiniLM full/LoRA at 64/128 tokens, the NER tagger, SmolLM2 LoRA); each was within
±13% (see the plan section of the README and tests/test_plan.py).
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch
from torch import nn

from verticalize.config import TrainConfig
from verticalize.console import console
from verticalize.errors import TrainingError
from verticalize.models.architecture import activation_elements_per_token, model_dims

GB = 1e9
ALLOCATOR_FACTOR = 0.95  # RSS growth per byte of the blocks' working set, fitted here
FIRST_STEP_BYTES = 250_000_000  # non-tensor memory the first step and evaluation add (oneDNN
# kernel caches, lazily imported metric and logging libraries): measured on MiniLM runs
ELEMENT_BYTES = {"fp32": 4.0, "bf16": 2.5, "fp16": 2.5}  # autocast keeps norms/softmax fp32
PRECISIONS = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}
LM_LOSS_CHUNK = 1024  # positions per chunk of a causal LM's loss: tasks.generation.chunked_loss


@dataclass
class MemoryEstimate:
    """Bytes at the peak of a training run, by what holds them."""

    weights: int
    gradients: int
    optimizer: int
    activations: int  # the larger of a training step's and an evaluation batch's
    runtime: int  # python, torch, transformers, tokenizer, data: the process before the model

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.runtime

    def as_dict(self) -> dict:
        return {**{k: int(v) for k, v in asdict(self).items()}, "total": int(self.total)}

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GB:.2f}" for k, v in asdict(self).items())
        return f"{self.total / GB:.2f} GB ({parts})"


def step_heap_bytes(model, batch: int, seq_len: int, elem: float) -> float:
    """The training step's working set of block-sized tensors (kept by the allocator)."""
    return batch * seq_len * activation_elements_per_token(model, seq_len, saved=False) * elem


def lm_head_bytes(model, tokens: int) -> float:
    """A causal LM's loss: the output layer is applied a chunk of positions at a time (see
    tasks.generation.chunked_loss), so one chunk's fp32 logits live at once, and the output
    layer's gradient when it trains."""
    d = model_dims(model)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    trains = head is not None and any(p.requires_grad for p in head.parameters())
    return min(tokens, LM_LOSS_CHUNK) * d.vocab * 4 + (d.vocab * d.hidden * 4 if trains else 0)


def step_large_bytes(model, batch: int, seq_len: int, lm_logits: bool) -> float:
    """Tensors too large for the heap (mmap'd, freed at once): a causal LM's chunk of logits."""
    if not lm_logits:
        return 0.0
    return lm_head_bytes(model, batch * seq_len)


def eval_bytes(model, batch: int, seq_len: int, lm_logits: bool, elem: float) -> float:
    """The largest transient of a no-grad evaluation batch: attention probabilities and the
    MLP of one block, or for a causal LM (batches of about 2^28 / vocab tokens, see
    tasks.generation.negative_log_likelihood) a chunk of logits and one block's MLP."""
    d = model_dims(model)
    if lm_logits:
        tokens = max(256, (256 << 20) // d.vocab)
        return lm_head_bytes(model, tokens) + tokens * (4 * d.hidden + 3 * d.intermediate) * elem
    tokens = batch * seq_len
    return tokens * (4 * d.hidden + 2 * d.intermediate + 2 * d.heads * seq_len) * elem


def parameter_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of all parameters and buffers, bytes of the trainable parameters)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    return weights, trainable


def resident_bytes(model: nn.Module | None = None) -> int:
    """This process's resident memory, less the model's weights when it is loaded: the
    interpreter, torch, transformers, the tokenizer and the data already in memory."""
    if model is not None:  # weights mapped from a safetensors file are resident once read
        with torch.no_grad():
            for p in model.parameters():
                p.sum()
    rss = psutil.Process().memory_info().rss
    return max(rss - (parameter_bytes(model)[0] if model is not None else 0), 0)


def peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux's VmHWM, not ru_maxrss: ru_maxrss survives
    exec, so a process started by a larger one (pytest, a notebook) reports its parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


_FIRST_RUNTIME: list[int] = []  # this process's first measurement


def runtime_bytes(model: nn.Module | None = None) -> int:
    """`resident_bytes`, never more than at this process's first call: what the allocator
    kept from an earlier training pass (e.g. the first generation stage) is reused."""
    now = resident_bytes(model)
    if not _FIRST_RUNTIME:
        _FIRST_RUNTIME.append(now)
    return min(now, _FIRST_RUNTIME[0])


def training_memory(
    model: nn.Module,
    t: TrainConfig,
    seq_len: int,
    lm_logits: bool,
    precision: str | None = None,
    runtime: int | None = None,
) -> MemoryEstimate:
    """Peak memory of training `model` (adapted exactly as the loop gets it) on batches of
    `seq_len` tokens. `precision` is fp32, bf16 or fp16 (default: t.mixed_precision);
    `runtime` defaults to this process's resident memory less the model's weights."""
    precision = precision or PRECISIONS[t.mixed_precision]
    elem = ELEMENT_BYTES[precision]
    weights, trainable = parameter_bytes(model)
    if precision != "fp32":  # autocast caches a 16-bit copy of the weights it casts
        weights += weights // 2
    gradients, optimizer = trainable, 2 * trainable  # fp32 grads; AdamW exp_avg, exp_avg_sq
    heap = step_heap_bytes(model, t.batch_size, seq_len, elem)
    if t.gradient_checkpointing:  # each block's input is kept; one block is recomputed
        layers = max(model_dims(model).layers, 1)
        heap = heap / layers + t.batch_size * seq_len * model_dims(model).hidden * elem * layers
    large = max(
        step_large_bytes(model, t.batch_size, seq_len, lm_logits),
        eval_bytes(model, t.eval_batch_size, seq_len, lm_logits, elem),
    )
    return MemoryEstimate(
        weights=int(weights),
        gradients=int(gradients),
        optimizer=int(optimizer),
        activations=int(ALLOCATOR_FACTOR * heap + large),
        runtime=int((runtime_bytes(model) if runtime is None else runtime) + FIRST_STEP_BYTES),
    )


# ---------------------------------------------------------------- the guard


def cgroup_limit() -> int | None:
    """The memory limit of this container (cgroup v2 or v1), if it sets one."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def available_bytes(t: TrainConfig) -> int:
    """What this run may use: train.memory_limit_gb, else available memory plus what this
    process already holds, capped by the container's limit."""
    if t.memory_limit_gb:
        return int(t.memory_limit_gb * GB)
    have = psutil.virtual_memory().available + psutil.Process().memory_info().rss
    limit = cgroup_limit()
    return min(have, limit) if limit else have


def guard_memory(
    estimate: MemoryEstimate, t: TrainConfig, force: bool = False, where: str = "train"
) -> None:
    """Refuse (TrainingError), warn or stay silent when the estimate exceeds what is available,
    as train.memory_guard says; `force` turns a refusal into a warning."""
    mode = "warn" if force and t.memory_guard == "refuse" else t.memory_guard
    available = available_bytes(t)
    if mode == "off" or estimate.total <= available:
        return
    source = "train.memory_limit_gb" if t.memory_limit_gb else "available now"
    message = (
        f"{where}: estimated peak memory {estimate.describe()} exceeds the "
        f"{available / GB:.2f} GB {source}. {suggestion(estimate, t)}"
    )
    if mode == "warn":
        console.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)
        return
    raise TrainingError(
        f"{message} To train anyway: `--ignore-memory-guard`, or set train.memory_guard: warn."
    )


def suggestion(estimate: MemoryEstimate, t: TrainConfig) -> str:
    """A concrete fix, aimed at the largest part of the estimate."""
    tips = []
    if estimate.gradients > estimate.weights // 2:  # most weights train
        tips.append("model.method: lora (gradients and AdamW states only for the adapters)")
    if t.batch_size > 1:
        half = max(t.batch_size // 2, 1)
        tips.append(
            f"train.batch_size: {half} with train.grad_accum_steps: "
            f"{t.grad_accum_steps * t.batch_size // half} (same effective batch)"
        )
    if not t.gradient_checkpointing:
        tips.append("train.gradient_checkpointing: true")
    tips.append("a shorter model.max_length")
    if t.mixed_precision == "no" and torch.cuda.is_available():
        tips.append("train.mixed_precision: bf16 (this GPU halves activations with it)")
    return "Fix: " + "; or ".join(tips) + "."
