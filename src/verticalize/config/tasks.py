"""The built-in tasks' own sections: `generation:` and `ner:`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from verticalize.config.base import Section


class GenerationConfig(Section):
    stages: list[Literal["continued_pretraining", "sft"]] = Field(
        ["sft"],
        min_length=1,
        description="Run in order: continued_pretraining on the `pretrain: true` sources, "
        "then sft on the conversations.",
    )
    packing: bool = Field(
        True, description="Pack several sequences into one row (no attention across them)."
    )
    block_size: int = Field(
        1024, ge=16, le=32768, description="Tokens per packed row (and per pre-training block)."
    )
    chat_template: str | None = Field(
        None,
        description="A Jinja chat template (text, or a .jinja file next to the YAML) for "
        "tokenizers without one; default: the tokenizer's own.",
    )
    pretrain_epochs: int = Field(1, ge=1)
    pretrain_lr: float | None = Field(None, gt=0, description="Default: train.lr.")
    incremental_from: str | None = Field(
        None,
        description="A previous run folder: start from its model/ and train only on records "
        "its training split did not have.",
    )
    max_new_tokens: int = Field(48, ge=1, le=4096)
    eval_generations: int = Field(
        100, ge=1, description="Test conversations generated for BLEU / ROUGE / exact match."
    )
    report_samples: int = Field(10, ge=0, description="Generations shown before vs after.")


class NerConfig(Section):
    scheme: Literal["bio", "bioes"] = Field(
        "bio", description="Tags the model predicts (whatever scheme the data came in)."
    )
    head: Literal["linear", "bilstm", "crf", "bilstm_crf"] = Field(
        "crf", description="linear, BiLSTM, CRF (Viterbi, no I-X after O) or BiLSTM-CRF (M4)."
    )
    fuse_with: Literal["linear", "bilstm"] | None = Field(
        None, description="A second emission head fused with the first (M4); none = off."
    )
    fusion: Literal["weighted", "gate"] = Field(
        "weighted",
        description="weighted = learned weighted sum of the two heads' scores; gate = a "
        "per-token attention gate over them.",
    )
    lstm_hidden: int = Field(256, ge=8, description="BiLSTM units per direction.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    head_lr: float | None = Field(
        1e-3, gt=0, description="Learning rate of the head (BiLSTM, CRF); None = train.lr."
    )
