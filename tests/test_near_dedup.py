"""Near-duplicate detection (D4): MinHash-LSH over character n-grams."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from verticalize.data.near_dedup import (
    NearDupIndex,
    cluster_near_duplicates,
    estimated_jaccard,
    lsh_bands,
    shingles,
    signature,
)
from verticalize.errors import DataError

ZH = (
    "受较强冷空气影响，今天晚上到明天，长江中下游及其以北大部地区将有四到六级偏北风，"
    "我国东部和南部海区有六到八级偏北风，江南和华南大部地区的气温将下降五到八摄氏度。"
)
EN = (
    "The patient reported that the new medication reduced her migraine frequency from "
    "twice a week to once a month, with only mild nausea during the first ten days."
)
UNRELATED = [
    "国务院副总理今天下午在钓鱼台国宾馆会见了来京访问的代表团，双方就经贸合作交换了意见。",
    "这本书的印刷质量很好，内容也很充实，孩子每天晚上都要我读给他听，非常值得购买。",
    "酒店位置不错，离地铁站只有五分钟路程，但是房间隔音太差，晚上根本睡不好觉。",
    "I switched to the generic version last spring and my blood pressure stayed stable.",
    "What do you get when you cross a snowman with a vampire? Frostbite, of course.",
    "Traffic on the bridge was backed up for three hours after the storm closed a lane.",
]


def _jaccard(a: str, b: str, n: int) -> float:
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb)


def _replace_every(text: str, step: int, new: str) -> str:
    """Replace every `step`-th character (a ~1/step edit rate, spread over the text)."""
    return "".join(new if i % step == step - 1 else c for i, c in enumerate(text))


def test_shingles_normalize_and_keep_short_texts_whole():
    assert shingles("Ab  C", 2) == shingles("ab c", 2) == {"ab", "b ", " c"}
    assert shingles(" 好 ", 3) == {"好"}
    assert shingles("", 3) == {""}


@pytest.mark.parametrize("text,new", [(ZH, "某"), (EN, "x")])
def test_edited_copy_of_long_sentence_is_found(text, new):
    copy = _replace_every(text, 12, new)  # ~8% of characters replaced
    assert copy != text
    links = cluster_near_duplicates([("orig", text), ("copy", copy)], 0.5, 3, 128)
    assert links == {"copy": "orig"}


def test_unrelated_texts_are_not_joined():
    items = [(f"u{i}", t) for i, t in enumerate([ZH, EN, *UNRELATED])]
    assert cluster_near_duplicates(items, 0.3, 3, 256) == {}


def test_representative_is_the_earliest_document():
    index = NearDupIndex(threshold=0.5, ngram=3, num_perm=128)
    first, second = _replace_every(ZH, 15, "甲"), ZH
    assert index.add("a", first) is None
    assert index.add("u", UNRELATED[0]) is None
    assert index.add("b", second) == "a"
    assert index.add("c", _replace_every(ZH, 13, "乙")) == "a"
    assert index.representative("c") == index.representative("a") == "a"
    assert index.duplicates() == {"b": "a", "c": "a"}


def test_joins_through_earliest_matching_member_without_merging_clusters():
    parts = [t[:30] for t in UNRELATED[:3]] + [ZH[:30], ZH[30:60], ZH[60:90]]
    a, b, c = "".join(parts[0:4]), "".join(parts[1:5]), "".join(parts[2:6])
    # Preconditions: b is near a and c is near b, but c is far from a.
    assert _jaccard(a, b, 3) > 0.55 and _jaccard(b, c, 3) > 0.55 and _jaccard(a, c, 3) < 0.4
    index = NearDupIndex(threshold=0.45, ngram=3, num_perm=256)
    assert [index.add(k, t) for k, t in [("a", a), ("b", b), ("c", c)]] == [None, "a", "a"]


def test_a_document_matching_two_clusters_joins_the_earlier_one():
    parts = [t[:30] for t in UNRELATED[:3]] + [ZH[:30], ZH[30:60], ZH[60:90]]
    x, y, bridge = "".join(parts[0:3]), "".join(parts[3:6]), "".join(parts[1:5])
    assert min(_jaccard(bridge, x, 3), _jaccard(bridge, y, 3)) > 0.4 > _jaccard(x, y, 3)
    index = NearDupIndex(threshold=0.3, ngram=3, num_perm=256)
    assert [index.add(k, t) for k, t in [("x", x), ("y", y), ("z", bridge)]] == [None, None, "x"]
    assert NearDupIndex(0.3, 3, 256).add("y", y) is None


def test_clustering_is_deterministic_across_runs_and_processes():
    items = [("orig", EN), ("copy", _replace_every(EN, 10, "q")), ("zh", ZH)]
    assert cluster_near_duplicates(items, 0.5, 3, 128) == cluster_near_duplicates(
        items, 0.5, 3, 128
    )
    code = (
        "import sys; from verticalize.data.near_dedup import signature; "
        "sys.stdout.write(signature(sys.argv[1], 3, 64).tobytes().hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str-hash seed than ours
    out = subprocess.run(
        [sys.executable, "-c", code, ZH], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert bytes.fromhex(out) == signature(ZH, 3, 64).tobytes()


def test_signature_pickles_and_feeds_the_index():
    sig = signature(EN, 3, 128)
    assert sig.dtype == np.uint32 and sig.shape == (128,)
    restored = pickle.loads(pickle.dumps(sig))
    assert np.array_equal(restored, sig)
    index = NearDupIndex(threshold=0.5, ngram=3, num_perm=128)
    index.add("orig", sig=restored)
    assert index.add("copy", sig=signature(_replace_every(EN, 12, "z"), 3, 128)) == "orig"
    with pytest.raises(ValueError, match="64 values"):
        index.add("short", sig=signature(EN, 3, 64))


def test_threshold_is_respected():
    half = len(EN) // 2
    mixed = EN[:half] + UNRELATED[5][:half]
    exact = _jaccard(EN, mixed, 3)
    assert exact < 0.4  # precondition: well below the threshold used next
    assert cluster_near_duplicates([("a", EN), ("b", mixed)], 0.6, 3, 256) == {}
    assert cluster_near_duplicates([("a", EN), ("b", mixed)], exact / 2, 3, 256) == {"b": "a"}
    assert abs(estimated_jaccard(signature(EN, 3, 256), signature(mixed, 3, 256)) - exact) < 0.1


def test_index_keeps_no_text_and_rejects_repeated_ids():
    index = NearDupIndex(threshold=0.5, ngram=3, num_perm=64)
    index.add("zh", ZH)
    assert "zh" in index and len(index) == 1
    assert ZH[:20].encode("utf-8") not in pickle.dumps(index)
    with pytest.raises(DataError, match="'zh'"):
        index.add("zh", EN)


def test_lsh_bands_propose_pairs_at_the_threshold():
    for threshold in (0.3, 0.5, 0.8):
        bands, rows = lsh_bands(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.995
