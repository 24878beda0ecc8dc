"""Peak training memory, estimated before training (P3, T9): weights + gradients + AdamW
states + activations + the process's own resident overhead, and the guard that refuses a run
that will not fit.

Activations come from an analytic per-layer count of the tensors autograd saves for the
backward pass, in elements per token per transformer block (h hidden, kv key/value width,
i intermediate, a heads, s sequence length, r LoRA rank), measured here with
`torch.autograd.graph.saved_tensors_hooks` on BERT (MiniLM) and Llama (SmolLM2) blocks:

    every block that needs a gradient     5.33·h + 2·kv + i  (3·i with a gated MLP)
    + attention in training with dropout  3·a·s  (SDPA falls back to the math kernel:
                                                  probabilities, dropout mask, output)
    + trainable block weights             3·h + i  (the inputs of q/k/v, o, up/gate, down)
    + each LoRA-wrapped Linear            1.75·in_features + r

Blocks below the lowest trainable parameter save nothing (no gradient flows there). A
causal LM adds its logits three times (logits, log-softmax, their gradient). On CPU the
glibc allocator keeps freed blocks mapped, so the tensor total is multiplied by
`ALLOCATOR_FACTOR`, fitted to peak RSS of real runs on this machine (see tests/test_plan.py).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from torch import nn

from verticalize.config import TrainConfig
from verticalize.console import console
from verticalize.errors import TrainingError

GB = 1e9
ALLOCATOR_FACTOR = 0.95  # RSS growth per byte of the blocks' working set, fitted here
FIRST_STEP_BYTES = 250_000_000  # non-tensor memory the first step and evaluation add (oneDNN
# kernel caches, lazily imported metric and logging libraries): measured on MiniLM runs
ELEMENT_BYTES = {"fp32": 4.0, "bf16": 2.5, "fp16": 2.5}  # autocast keeps norms/softmax fp32
PRECISIONS = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}


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


def step_heap_bytes(model, batch: int, seq_len: int, elem: float) -> float:
    """The training step's working set of block-sized tensors (kept by the allocator)."""
    return batch * seq_len * activation_elements_per_token(model, seq_len, saved=False) * elem


def step_large_bytes(model, batch: int, seq_len: int, task: str) -> float:
    """Tensors too large for the heap (mmap'd, freed at once): a causal LM's logits, their
    log-softmax and its gradient, all fp32."""
    if task != "generation":
        return 0.0
    return 3.0 * batch * seq_len * model_dims(model).vocab * 4


def eval_bytes(model, batch: int, seq_len: int, task: str, elem: float) -> float:
    """The largest transient of a no-grad evaluation batch: attention probabilities and the
    MLP of one block, or a causal LM's logits (evaluation batches hold about 2^28 / vocab
    tokens, see tasks.generation.negative_log_likelihood)."""
    d = model_dims(model)
    if task == "generation":
        tokens = max(256, (256 << 20) // d.vocab)
        return 2.0 * tokens * d.vocab * 4 + tokens * (4 * d.hidden + 3 * d.intermediate) * elem
    tokens = batch * seq_len
    return tokens * (4 * d.hidden + 2 * d.intermediate + 2 * d.heads * seq_len) * elem


def parameter_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of all parameters and buffers, bytes of the trainable parameters)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    return weights, trainable


def runtime_bytes(model: nn.Module | None = None) -> int:
    """This process's resident memory, less the model's weights when it is loaded: the
    interpreter, torch, transformers, the tokenizer and the data already in memory."""
    rss = psutil.Process().memory_info().rss
    weights = parameter_bytes(model)[0] if model is not None else 0
    return max(rss - weights, 0)


def training_memory(
    model: nn.Module,
    t: TrainConfig,
    seq_len: int,
    task: str,
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
        step_large_bytes(model, t.batch_size, seq_len, task),
        eval_bytes(model, t.eval_batch_size, seq_len, task, elem),
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
    if estimate.optimizer + estimate.gradients > estimate.activations:
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
    if os.environ.get("CUDA_VISIBLE_DEVICES") != "" and t.mixed_precision == "no":
        tips.append("train.mixed_precision: bf16 on a GPU that supports it")
    return "Fix: " + "; or ".join(tips) + "."
