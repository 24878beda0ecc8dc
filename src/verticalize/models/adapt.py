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


def reduce_layers(model: nn.Module, keep: int, which: str) -> nn.Module:
    """Keep `keep` transformer blocks (the lowest, or evenly spread) and drop the rest."""
    stack = transformer_layers(model)
    n = len(stack)
    if keep > n:
        raise ConfigError(
            f"model.layer_reduction.keep: {keep} but the model has {n} layers. Fix: use 1..{n}."
        )
    if which == "first":
        kept = list(range(keep))
    else:
        kept = sorted({round(i * (n - 1) / max(keep - 1, 1)) for i in range(keep)})
    blocks = nn.ModuleList(stack[i] for i in kept)
    for new_idx, block in enumerate(blocks):
        for module in block.modules():  # the KV cache is indexed by layer_idx
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    for name, module in model.base_model.named_modules():
        if module is stack:
            parent = model.base_model.get_submodule(name.rpartition(".")[0])
            setattr(parent, name.rpartition(".")[2], blocks)
            break
    model.config.num_hidden_layers = len(blocks)
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = [model.config.layer_types[i] for i in kept]
    return model


def _peft(model: nn.Module, peft_cfg, field: str):
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise ConfigError(f"model.{field}: {e}. Fix: check the values of model.{field}.") from None


def prompt_tuning(model: nn.Module, task_type: str, virtual_tokens: int, init_text, base: str):
    """PEFT prompt tuning: only `virtual_tokens` input embeddings train (plus a new head)."""
    from peft import PromptTuningConfig, PromptTuningInit

    cfg = PromptTuningConfig(
        task_type=task_type,
        num_virtual_tokens=virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if init_text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=init_text,
        tokenizer_name_or_path=base if init_text else None,
    )
    return _peft(model, cfg, "prompt")


def prefix_tuning(model: nn.Module, task_type: str, virtual_tokens: int):
    """PEFT prefix tuning: trainable key/value prefixes in every layer."""
    from peft import PrefixTuningConfig

    cfg = PrefixTuningConfig(task_type=task_type, num_virtual_tokens=virtual_tokens)
    return _peft(model, cfg, "prompt")


def lora(
    model: nn.Module,
    r: int,
    alpha: int,
    dropout: float,
    targets: list[str] | None,
    task_type: str = "SEQ_CLS",
):
    """Wrap with PEFT LoRA: adapters train, and so does a classification head (SEQ_CLS)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        task_type=task_type,
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


def freeze_word_embeddings(model: nn.Module) -> nn.Module:
    """The input word-embedding matrix stops training (position embeddings, LayerNorm train on)."""
    model.get_input_embeddings().weight.requires_grad = False
    return model


def adapt(
    model: nn.Module, cfg: ModelConfig, task_type: str = "SEQ_CLS", base: str = ""
) -> nn.Module:
    """Apply `cfg.method`, then `cfg.freeze_embeddings`; `task_type` is PEFT's (SEQ_CLS,
    CAUSAL_LM, TOKEN_CLS)."""
    model = _apply_method(model, cfg, task_type, base)
    return freeze_word_embeddings(model) if cfg.freeze_embeddings else model


def _apply_method(model: nn.Module, cfg: ModelConfig, task_type: str, base: str) -> nn.Module:
    if cfg.method == "freeze":
        return freeze(model, cfg.freeze.layers, cfg.freeze.embeddings, cfg.freeze.head_only)
    if cfg.method == "layer_reduction":
        return reduce_layers(model, cfg.layer_reduction.keep, cfg.layer_reduction.which)
    if cfg.method == "lora":
        lc = cfg.lora
        return lora(model, lc.r, lc.alpha, lc.dropout, lc.target_modules, task_type)
    if cfg.method == "prompt_tuning":
        return prompt_tuning(
            model, task_type, cfg.prompt.virtual_tokens, cfg.prompt.init_text, base
        )
    if cfg.method == "prefix_tuning":
        return prefix_tuning(model, task_type, cfg.prompt.virtual_tokens)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def merged(model: nn.Module) -> nn.Module:
    """A plain transformers model: LoRA adapters merged into the base weights (X1). Prompt
    and prefix tuning cannot be merged: the PEFT model is returned and saved as an adapter."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and not model.peft_config["default"].is_prompt_learning:
        return model.merge_and_unload()
    return model
