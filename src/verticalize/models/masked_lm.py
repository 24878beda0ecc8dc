"""An encoder's masked-LM form, for continued pre-training on domain text (T6).

The loss is computed from the hidden states at the masked positions only: a pre-hook on the
MLM head hands it just those rows, so a 250k-piece vocabulary (multilingual-e5) costs
(masked tokens × vocabulary) logits, never (every token × vocabulary). The model still runs
through its own forward, so DDP and FSDP wrappers see an ordinary call.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from verticalize.errors import ConfigError
from verticalize.models.load import _from_pretrained, load_tokenizer, resolve_base

IGNORE = -100  # the label of a position that is not masked


def masked_lm_class(base: str) -> str | None:
    """The transformers masked-LM class of `base` (e.g. BertForMaskedLM), or None when its
    architecture has none (a causal LM). Reads config.json only."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    config = _from_pretrained(AutoConfig, base)
    return MODEL_FOR_MASKED_LM_MAPPING_NAMES.get(config.model_type)


def check_masked_lm_form(base: str) -> None:
    """A ConfigError naming the fix when `base` has no masked-LM form."""
    if masked_lm_class(base) is None:
        from transformers import AutoConfig

        kind = _from_pretrained(AutoConfig, base).model_type
        raise ConfigError(
            f"train.continued_pretraining: model.base {base!r} (model_type {kind!r}) has no "
            "masked-LM form, so it cannot be pre-trained by masking tokens. Fix: use an "
            "encoder base (BERT-like, e.g. multilingual-e5-small or all-MiniLM-L6-v2), or "
            "remove train.continued_pretraining."
        )


def load_masked_lm(base: str):
    """(model, tokenizer, names of the weights initialised because `base` lacks them): the
    encoder with its MLM head (AutoModelForMaskedLM); a missing head starts random."""
    from transformers import AutoModelForMaskedLM

    check_masked_lm_form(base)
    tokenizer = load_tokenizer(base)
    if tokenizer.mask_token_id is None:
        raise ConfigError(
            f"train.continued_pretraining: the tokenizer of {base!r} has no mask token. Fix: "
            "use an encoder base with one (e.g. multilingual-e5-small), or remove "
            "train.continued_pretraining."
        )
    model, info = _from_pretrained(
        AutoModelForMaskedLM, base, dtype=torch.float32, output_loading_info=True
    )
    return model, tokenizer, sorted(info.get("missing_keys") or [])


def _inner(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP
        model = model.module
    return model


def head_entry(model: nn.Module) -> nn.Module:
    """The first module of the MLM head (BERT's `cls`, XLM-R's `lm_head`, DistilBERT's
    `vocab_transform`): every child but the encoder and loss functions, in forward order."""
    inner = _inner(model)
    encoder = inner.base_model
    for child in inner.children():
        if child is not encoder and not isinstance(child, nn.modules.loss._Loss):
            return child
    raise ConfigError(
        f"train.continued_pretraining: {type(inner).__name__} has no MLM head module. Fix: "
        "use a BERT-like encoder base, or remove train.continued_pretraining."
    )


def masked_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(masked positions × vocabulary) logits, in the row order of `labels != IGNORE`."""
    where = batch["labels"] != IGNORE

    def masked_rows(module, args):
        return (args[0][where].unsqueeze(0), *args[1:])

    handle = head_entry(model).register_forward_pre_hook(masked_rows)
    try:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        handle.remove()
    return out.logits[0]


def masked_lm_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], reduction: str = "mean"
) -> tuple[torch.Tensor, int]:
    """(cross-entropy over the masked positions, how many there are); a batch without any
    masked token gives a zero loss that still reaches every trainable weight's graph."""
    labels = batch["labels"][batch["labels"] != IGNORE]
    logits = masked_logits(model, batch)
    if labels.numel() == 0:
        return logits.sum() * 0.0, 0
    return F.cross_entropy(logits.float(), labels, reduction=reduction), labels.numel()


def freeze_word_embeddings(model: nn.Module) -> None:
    """Keep the word-embedding matrix (and the output layer tied to it) fixed."""
    for p in model.get_input_embeddings().parameters():
        p.requires_grad = False


def save_adapted_encoder(model: nn.Module, base: str, tokenizer, out: Path) -> None:
    """`out` gets the base model (AutoModel of `base`, e.g. BertModel) with every weight the
    masked-LM model trained, and the tokenizer; weights the MLM form lacks (a pooler) keep
    the base's values, so a task head loads from `out` as it would from `base`."""
    from transformers import AutoModel

    encoder = _from_pretrained(AutoModel, resolve_base(base), dtype=torch.float32)
    trained = _inner(model).base_model.state_dict()
    missing, unexpected = encoder.load_state_dict(trained, strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise ConfigError(
            f"train.continued_pretraining: the masked-LM encoder of {base!r} does not match "
            f"its base model (missing {missing[:3]}, unexpected {unexpected[:3]}). Fix: use a "
            "BERT-like encoder base, or remove train.continued_pretraining."
        )
    encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
