"""Near-duplicate detection (D4): MinHash-LSH over n-grams of the script's units."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

from verticalize.data.band_table import BandTable
from verticalize.data.near_dedup import (
    DEFAULT_SHINGLING,
    NearDupIndex,
    Signature,
    cluster_near_duplicates,
    estimated_jaccard,
    lsh_bands,
    script_of,
    shingles,
    shingling,
    signature,
    units,
)
from verticalize.errors import DataError

ZH = (
    "受较强冷空气影响，今天晚上到明天，长江中下游及其以北大部地区将有四到六级偏北风，"
    "我国东部和南部海区有六到八级偏北风，江南和华南大部地区的气温将下降五到八摄氏度。"
)
EN = (
    "The patient reported that the new medication reduced her migraine frequency from "
    "twice a week to once a month, with only mild nausea during the first ten days of the "
    "treatment, and she would recommend it to anyone who has tried the older drugs."
)
UNRELATED = [
    "国务院副总理今天下午在钓鱼台国宾馆会见了来京访问的代表团，双方就经贸合作交换了意见。",
    "这本书的印刷质量很好，内容也很充实，孩子每天晚上都要我读给他听，非常值得购买。",
    "酒店位置不错，离地铁站只有五分钟路程，但是房间隔音太差，晚上根本睡不好觉。",
    "I switched to the generic version last spring and my blood pressure stayed stable.",
    "What do you get when you cross a snowman with a vampire? Frostbite, of course.",
    "Traffic on the bridge was backed up for three hours after the storm closed a lane.",
]
# Two real People's Daily items of one template: other names, other facts. Not duplicates.
TEMPLATED = (
    "新华社北京１月１６日电外交部发言人沈国放今天在此间宣布：应钱其琛副总理兼外长的邀请，"
    "法国外长于贝尔·韦德里纳将于１月２２日至２３日对中国进行正式访问。",
    "新华社北京１月１５日电外交部发言人沈国放今天在记者招待会上宣布：应国家主席江泽民的邀请，"
    "贝宁共和国总统马蒂厄·克雷库将于１月１９日至２４日对中国进行国事访问。",
)
# Two more, closer: most 2-grams shared, but other days, verbs and visitors.
MEETINGS = (
    "据新华社北京１月２３日电（记者罗辉）国务院副总理兼外长钱其琛今天上午在钓鱼台国宾馆同"
    "法国外交部长于贝尔·韦德里纳举行会谈。",
    "据新华社北京１月１９日电（记者罗辉）国务院副总理兼外长钱其琛今天下午在钓鱼台国宾馆会见了"
    "美国参议员蒂姆·哈钦森。",
)


def _jaccard(a: str, b: str, n: int) -> float:
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb)


def _replace_every(text: str, step: int, new: str) -> str:
    """Replace every `step`-th unit (character of Chinese, word of English): a ~1/step
    edit rate, spread over the text."""
    if script_of(units(text)) == "cjk":
        return "".join(new if i % step == step - 1 else c for i, c in enumerate(text))
    words = text.split()
    return " ".join(new if i % step == step - 1 else w for i, w in enumerate(words))


def _index(threshold: float, ngram: int, num_perm: int, **kw) -> NearDupIndex:
    """An index that joins on n-gram Jaccard alone (no vocabulary check)."""
    return NearDupIndex(shingling(threshold, ngram, vocab_threshold=0.0), num_perm, **kw)


def test_units_are_cjk_characters_and_words_and_decide_the_script():
    assert units("Hello, 世界! abc中文 x_y 123") == [
        "hello", "世", "界", "abc", "中", "文", "x", "y", "123",
    ]  # fmt: skip
    assert script_of(units(ZH)) == "cjk" and script_of(units(EN)) == "latin"
    assert script_of(units("用了一个2000-100的东券, very good")) == "cjk"
    assert script_of(units("The drug 布洛芬 helped a lot with my pain")) == "latin"
    assert script_of([]) == "latin"


def test_shingles_are_unit_ngrams_and_keep_short_texts_whole():
    assert shingles("Ab,  C d", 2) == shingles("ab c d!", 2) == {"ab\x1fc", "c\x1fd"}
    assert shingles("好天气", 2) == {"好\x1f天", "天\x1f气"}
    assert shingles(" 好 ", 3) == {"好"}
    assert shingles("", 3) == {""}
    assert shingles("!!!", 2) == {"!!!"}  # no units: the normalized text itself


@pytest.mark.parametrize("text,new", [(ZH, "某"), (EN, "banana")], ids=["zh", "en"])
def test_edited_copy_of_long_text_is_found(text, new):
    copy = _replace_every(text, 12, new)  # ~8% of the units replaced
    assert copy != text
    links = cluster_near_duplicates([("orig", text), ("copy", copy)], 128, 0.5, 3)
    assert links == {"copy": "orig"}


@pytest.mark.parametrize("step", [8, 5], ids=["eighth", "fifth"])
@pytest.mark.parametrize("text,new", [(ZH, "某"), (EN, "banana")], ids=["zh", "en"])
def test_defaults_find_a_copy_with_up_to_a_fifth_of_its_units_edited(text, new, step):
    copy = _replace_every(text, step, new)
    assert cluster_near_duplicates([("orig", text), ("copy", copy)]) == {"copy": "orig"}


def test_defaults_leave_templated_news_apart():
    assert _jaccard(*TEMPLATED, 1) > 0.45  # precondition: many characters in common
    items = [(f"u{i}", t) for i, t in enumerate([ZH, EN, *UNRELATED, *TEMPLATED, *MEETINGS])]
    assert cluster_near_duplicates(items) == {}


def test_the_vocabulary_check_is_what_keeps_one_template_apart():
    # Preconditions: the 2-grams alone call the two items near-duplicates, their unit sets
    # (other names, day, verb) do not.
    threshold = DEFAULT_SHINGLING["cjk"].threshold
    assert _jaccard(*MEETINGS, 2) > threshold + 0.1
    assert _jaccard(*MEETINGS, 1) < DEFAULT_SHINGLING["cjk"].vocab_threshold - 0.1
    items = list(zip(("a", "b"), MEETINGS, strict=True))
    assert cluster_near_duplicates(items, vocab_threshold=0.0) == {"b": "a"}
    assert cluster_near_duplicates(items) == {}
    with pytest.raises(ValueError, match="vocab_threshold"):
        NearDupIndex(shingling(vocab_threshold=1.5), 128)


def test_documents_of_different_scripts_are_never_compared():
    sig_zh = signature(ZH, shingling(), 128)
    sig_en = signature(EN, shingling(), 128)
    assert (sig_zh.script, sig_en.script) == ("cjk", "latin")
    index = NearDupIndex(shingling(0.01, 1), 128)
    index.add("zh", sig=sig_zh)
    # the same values under the other script: a match only if scripts were mixed up
    assert index.add("en", sig=Signature("latin", sig_zh.values, sig_zh.vocab)) is None


def test_unrelated_texts_are_not_joined():
    items = [(f"u{i}", t) for i, t in enumerate([ZH, EN, *UNRELATED])]
    assert cluster_near_duplicates(items, 256, 0.3, 3) == {}


def test_representative_is_the_earliest_document():
    index = _index(0.5, 3, 128)
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
    index = _index(0.45, 3, 256)
    assert [index.add(k, t) for k, t in [("a", a), ("b", b), ("c", c)]] == [None, "a", "a"]


def test_a_document_matching_two_clusters_joins_the_earlier_one():
    parts = [t[:30] for t in UNRELATED[:3]] + [ZH[:30], ZH[30:60], ZH[60:90]]
    x, y, bridge = "".join(parts[0:3]), "".join(parts[3:6]), "".join(parts[1:5])
    assert min(_jaccard(bridge, x, 3), _jaccard(bridge, y, 3)) > 0.38 > 0.2 > _jaccard(x, y, 3)
    index = _index(0.3, 3, 256)
    assert [index.add(k, t) for k, t in [("x", x), ("y", y), ("z", bridge)]] == [None, None, "x"]
    assert _index(0.3, 3, 256).add("y", y) is None


def test_clustering_is_deterministic_across_runs_and_processes():
    items = [("orig", EN), ("copy", _replace_every(EN, 10, "q")), ("zh", ZH)]
    assert cluster_near_duplicates(items, 128, 0.5, 3) == cluster_near_duplicates(
        items, 128, 0.5, 3
    )
    code = (
        "import sys; from verticalize.data.near_dedup import shingling, signature; "
        "s = signature(sys.argv[1], shingling(), 64); "
        "sys.stdout.write((s.values.tobytes() + s.vocab.tobytes()).hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str-hash seed than ours
    out = subprocess.run(
        [sys.executable, "-c", code, ZH], capture_output=True, text=True, check=True, env=env
    ).stdout
    ours = signature(ZH, shingling(), 64)
    assert bytes.fromhex(out) == ours.values.tobytes() + ours.vocab.tobytes()


def test_signature_pickles_and_feeds_the_index():
    settings = shingling(0.5, 3)
    sig = signature(EN, settings, 128)
    for values in (sig.values, sig.vocab):
        assert values.dtype == np.uint32 and values.shape == (128,)
    restored = pickle.loads(pickle.dumps(sig))
    assert restored.script == "latin" and np.array_equal(restored.values, sig.values)
    assert np.array_equal(restored.vocab, sig.vocab)
    index = NearDupIndex(settings, 128)
    index.add("orig", sig=restored)
    assert index.add("copy", sig=signature(_replace_every(EN, 12, "z"), settings, 128)) == "orig"
    with pytest.raises(ValueError, match="64 values"):
        index.add("short", sig=signature(EN, settings, 64))


def test_threshold_is_respected():
    half = len(EN) // 2
    mixed = EN[:half] + UNRELATED[5] + UNRELATED[3]
    exact = _jaccard(EN, mixed, 3)
    assert exact < 0.4  # precondition: well below the threshold used next
    assert cluster_near_duplicates([("a", EN), ("b", mixed)], 256, 0.6, 3) == {}
    joined = cluster_near_duplicates([("a", EN), ("b", mixed)], 256, exact / 2, 3, 0.0)
    assert joined == {"b": "a"}
    settings = shingling(ngram=3)
    estimate = estimated_jaccard(
        signature(EN, settings, 256).values, signature(mixed, settings, 256).values
    )
    assert abs(estimate - exact) < 0.1


def test_index_keeps_no_text_and_rejects_repeated_ids():
    index = _index(0.5, 3, 64)
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


def test_band_table_answers_the_same_before_and_after_freezing_runs():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, size=(300, 4)).astype(np.uint64)  # many repeats
    small, reference = BandTable(flush_at=7, max_run=40), {}
    for row, ks in enumerate(keys):
        small.insert(ks, row)
        for k in ks.tolist():
            reference.setdefault(k, []).append(row)
    assert len(small._runs) > 1  # frozen, merged, and capped runs all took part
    assert len(small) == keys.size and small.nbytes() > 0
    for probe in (np.array([3, 49, 77], dtype=np.uint64), keys[0]):
        want = sorted(r for k in probe.tolist() for r in reference.get(k, []))
        assert sorted(small.query(probe)) == want


def test_clusters_do_not_depend_on_when_the_band_table_freezes():
    rng = random.Random(3)
    texts = [*UNRELATED, ZH, EN, *TEMPLATED]
    items = [
        (f"d{i}", _replace_every(rng.choice(texts), rng.randint(5, 9), "某")) for i in range(60)
    ]
    tiny = NearDupIndex(shingling(), 128, table=BandTable(flush_at=16, max_run=64))
    plain = NearDupIndex(shingling(), 128)
    for key, text in items:
        assert tiny.add(key, text) == plain.add(key, text)
    assert tiny.duplicates() and tiny.duplicates() == plain.duplicates()
