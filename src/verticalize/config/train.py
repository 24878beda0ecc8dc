"""The `train:` section: optimisation, early stopping, tracking, the memory guard and
distributed training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from verticalize.config.base import Section


class EarlyStopping(Section):
    metric: str | None = Field(
        None,
        description="Default: macro_f1 (classification), loss (generation), entity_f1_micro (ner).",
    )
    patience: int = Field(5, ge=1, description="Evaluations without improvement before stopping.")


class DistributedConfig(Section):
    """How several processes share training (T7); the process count comes from the launcher
    (`verticalize train --nproc N`, torchrun, srun, a Kubernetes PyTorchJob), never from
    this file, so the same YAML runs on 1 or N processes."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp",
        description="ddp: every process holds the whole model. fsdp: parameters, gradients "
        "and AdamW states are sharded across the processes (PyTorch FSDP2, like ZeRO-3), one "
        "transformer block gathered at a time; checkpoints and model/ hold the full weights. "
        "Both run over gloo (CPU) or NCCL (GPU). deepspeed is refused: use fsdp.",
    )
    timeout_s: int = Field(1800, ge=10, description="Collective-operation timeout.")


class ContinuedPretrainingConfig(Section):
    """Masked-LM training of an encoder on the `pretrain: true` sources before the task's
    fine-tuning (domain-adaptive pre-training); the fine-tuning starts from its weights."""

    epochs: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0, description="Default: train.lr.")
    mask_prob: float = Field(
        0.15, gt=0.0, lt=1.0, description="Share of tokens masked (80% <mask>, 10% random)."
    )
    max_length: int | None = Field(
        None, gt=0, le=8192, description="Tokens per text (longer are cut); default: model."
    )
    max_records: int | None = Field(
        None, ge=2, description="Train on a seeded sample of at most N pretrain records."
    )


class PretrainSetupError(ValueError):
    """`pretrain: true` sources and train.continued_pretraining do not fit together."""

    def __init__(self, loc: tuple, value, msg: str, fix: str):
        self.loc, self.value, self.fix = loc, value, fix
        super().__init__(msg)


class TrainConfig(Section):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0, description="Decoupled L2 weight decay (AdamW).")
    l1: float = Field(0.0, ge=0, description="L1 penalty on trainable weights.")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    schedule: Literal["cosine", "cosine_restarts", "linear", "step", "constant"] = Field(
        "cosine",
        description="After warmup: cosine decay to 0, cosine_restarts (decay to 0 `cycles` "
        "times, each restart at the full LR), linear decay, step decay, or constant.",
    )
    cycles: int = Field(2, ge=1, le=100, description="cosine_restarts: decays to 0 in the run.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    step_size: int = Field(
        100, ge=1, description="step schedule: multiply LR by gamma every N steps"
    )
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    class_weights: Literal["auto", "none"] | dict[str, float] = Field(
        "none",
        description="Per-class loss weights: auto = n / (classes x n_class) from the training "
        "split (scikit-learn's 'balanced'), none, or {label: weight} (labels left out weigh 1).",
    )
    loss: Literal["cross_entropy", "focal"] = Field(
        "cross_entropy",
        description="focal = cross-entropy x (1 - p_true)^focal_gamma: easy, confident examples "
        "count less (Lin et al. 2017); label smoothing and class weights still apply.",
    )
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0, description="loss: focal's exponent.")
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle",
        description="shuffle = each training record once an epoch; balanced = as many draws, "
        "with replacement, each class equally likely (seeded by seed and epoch).",
    )
    tune_thresholds: bool = Field(
        False,
        description="After training, tune one logit offset per class on the validation split "
        "for the early-stopping metric (e.g. macro-F1) and fold them into the classification "
        "head's bias, so predict, eval, export and serve all use them.",
    )
    eval_every: int | None = Field(None, ge=1, description="Optimizer steps; None = each epoch.")
    checkpoint_every: int | None = Field(None, ge=1, description="Steps; None = at each eval.")
    keep_checkpoints: int = Field(2, ge=1)
    early_stopping: EarlyStopping = EarlyStopping()
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: much less memory, ~30% slower.",
    )
    tensorboard: bool = True
    mlflow: bool = Field(
        True, description="Track params, per-step metrics and artifacts with MLflow (T5)."
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI. Default: registry.tracking_uri, else "
        "$MLFLOW_TRACKING_URI, else sqlite:///<runs folder>/mlflow.db.",
    )
    mlflow_experiment: str | None = Field(None, description="Default: the project `name`.")
    memory_guard: Literal["refuse", "warn", "off"] = Field(
        "refuse",
        description="Before training, compare the plan's peak-memory estimate with the memory "
        "available: refuse (the default; `--ignore-memory-guard` forces), warn, or off.",
    )
    memory_limit_gb: float | None = Field(
        None, gt=0, description="Memory this run may use. Default: what is available now."
    )
    distributed: DistributedConfig = DistributedConfig()
    continued_pretraining: ContinuedPretrainingConfig | None = Field(
        None,
        description="Encoder tasks: masked-LM training on the `pretrain: true` sources "
        "before fine-tuning, e.g. {epochs: 1}; None = off. (generation: generation.stages.)",
    )


# Fields that change how a run is watched or launched, not what it learns.
TRAIN_RUNTIME_FIELDS = {
    "tensorboard",
    "mlflow",
    "mlflow_uri",
    "mlflow_experiment",
    "memory_guard",
    "memory_limit_gb",
    "distributed",
}
