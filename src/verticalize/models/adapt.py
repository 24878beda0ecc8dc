"""Adaptation methods (M3): which parameters train. One function per method."""

from __future__ import annotations

from torch import nn

from verticalize.config import ModelConfig
from verticalize.errors import ConfigError


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The backbone's stack of transformer blocks (encoder.layer, layers, h, …)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.base_model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(
        f"model.freeze: cannot find the {n} transformer layers of {type(model).__name__}"
    )


def freeze(model: nn.Module, layers: int, embeddings: bool, head_only: bool) -> nn.Module:
    """Freeze the embeddings and the first `layers` blocks, or the whole backbone."""
    if head_only:
        for p in model.base_model.parameters():
            p.requires_grad = False
        return model
    stack = transformer_layers(model)
    if layers > len(stack):
        raise ConfigError(
            f"model.freeze.layers: {layers} but the model has {len(stack)} layers. "
            f"Fix: use 0..{len(stack)}, or head_only: true."
        )
    if embeddings:
        emb = getattr(model.base_model, "embeddings", None) or model.get_input_embeddings()
        for p in emb.parameters():
            p.requires_grad = False
    for block in stack[:layers]:
        for p in block.parameters():
            p.requires_grad = False
    return model


def lora(model: nn.Module, r: int, alpha: int, dropout: float, targets: list[str] | None):
    """Wrap with PEFT LoRA (task type SEQ_CLS): adapters train, and so does the head."""
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
    )
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:
        raise ConfigError(
            f"model.lora.target_modules: {targets!r}: {e}. Fix: name Linear layers of the "
            "model (e.g. [query, value] for BERT, [q_proj, v_proj] for Llama/Gemma)."
        ) from None


def adapt(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    if cfg.method == "freeze":
        return freeze(model, cfg.freeze.layers, cfg.freeze.embeddings, cfg.freeze.head_only)
    if cfg.method == "lora":
        return lora(model, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def merged(model: nn.Module) -> nn.Module:
    """A plain transformers model: LoRA adapters merged into the base weights (X1)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
