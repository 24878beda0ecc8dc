"""The `model:` section: the base model and how it is adapted (full, freeze, layer
reduction, LoRA, prompt / prefix tuning)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from verticalize.config.base import Section


class FreezeConfig(Section):
    layers: int = Field(0, ge=0, description="Freeze the first N encoder layers.")
    embeddings: bool = True
    head_only: bool = Field(False, description="Train only the classification head.")


class LoraConfig(Section):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(
        None, description="None = PEFT's default for the model."
    )


class LayerReductionConfig(Section):
    keep: int = Field(6, ge=1, description="Transformer layers kept; the others are removed.")
    which: Literal["first", "spread"] = Field(
        "first", description="first = the lowest N layers; spread = N evenly spaced layers."
    )


class VirtualTokensConfig(Section):
    virtual_tokens: int = Field(20, ge=1, description="Trainable virtual tokens (PEFT).")
    init_text: str | None = Field(
        None, description="prompt tuning: initialise the virtual tokens from this text."
    )


METHODS = ("full", "freeze", "layer_reduction", "lora", "prompt_tuning", "prefix_tuning")


class ModelConfig(Section):
    base: str | None = Field(
        None,
        description="A bundled model name, a Hugging Face model folder, or a hub id (offline: "
        "cached). Default: all-MiniLM-L6-v2 (classification), SmolLM2-135M-Instruct (generation).",
    )
    method: Literal[METHODS] = "full"
    max_length: int = Field(128, gt=0, le=8192)
    freeze_embeddings: bool = Field(
        False,
        description="Keep the word-embedding matrix fixed, whatever the method: most of a "
        "multilingual model's parameters (multilingual-e5-small: 96M of 118M), so this saves "
        "their gradients and optimizer state. Tied input/output embeddings (most causal LMs) "
        "freeze the LM head too.",
    )
    freeze: FreezeConfig = FreezeConfig()
    lora: LoraConfig = LoraConfig()
    layer_reduction: LayerReductionConfig = LayerReductionConfig()
    prompt: VirtualTokensConfig = VirtualTokensConfig()
