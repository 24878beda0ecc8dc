"""Normalization (D3): width, HTML, whitespace with line breaks kept, t2s, numbers,
boilerplate lines, and span-preserving normalization for sequence-labelled records."""

import io
import json

import pytest

from verticalize.config import BoilerplateConfig, CleanConfig
from verticalize.data.clean import (
    BoilerplateDetector,
    clean,
    normalize_record,
    normalize_text,
)
from verticalize.data.manifest import Quarantine
from verticalize.data.numbers import (
    chinese_numbers_to_digits,
    drop_thousands_separators,
    normalize_numbers,
)

DEFAULT = CleanConfig()


def test_full_width_becomes_half_width():
    assert normalize_text("ＡＢＣ１２３，（好）！", DEFAULT) == "ABC123,(好)!"


def test_html_remnants_and_wrapping_quotes():
    assert normalize_text("Tom &amp;amp; Jerry <b>rock</b>&nbsp;!", DEFAULT) == "Tom & Jerry rock !"
    assert normalize_text('"""I didn&#039;t sleep"""', DEFAULT) == "I didn't sleep"
    raw = "<b>x</b> &amp;"
    assert normalize_text(raw, CleanConfig(html=False)) == raw


def test_whitespace_collapses_within_lines_and_line_breaks_survive():
    text = "  first \t line  \r\n\r\n\n   second\u3000line\x07end \n \n\u2028third\u200b."
    assert normalize_text(text, DEFAULT) == "first line\nsecond line end\nthird ."


def test_undecodable_bytes_become_replacement_characters():
    out = normalize_text("bad \udcff byte", DEFAULT)
    assert out == "bad \ufffd byte"
    out.encode("utf-8")  # writable


def test_lowercase_is_optional():
    assert normalize_text("Hello World", CleanConfig(lowercase=True)) == "hello world"
    assert normalize_text("Hello World", DEFAULT) == "Hello World"


def test_traditional_to_simplified():
    cfg = CleanConfig(traditional_to_simplified=True)
    assert normalize_text("醫院的頭髮護理很專業", cfg) == "医院的头发护理很专业"
    assert normalize_text("醫院", DEFAULT) == "醫院"  # off by default


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100万", "1000000"),
        ("1.5亿", "150000000"),
        ("三千", "3000"),
        ("3千", "3000"),
        ("１００万元", "1000000元"),
        ("一百二十三人", "123人"),
        ("一亿两千万", "120000000"),
        ("3万5千", "35000"),
        ("1.23456万", "12345.6"),
        ("百分之五十", "50%"),
        ("三千一样", "3000一样"),
        ("十二月", "12月"),
    ],
)
def test_chinese_numbers_become_digits(text, expected):
    assert chinese_numbers_to_digits(unicode_nfkc(text)) == expected


def unicode_nfkc(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", text)


NOT_NUMBERS = [
    "一些",
    "万一",
    "一样",
    "统一",
    "一定",
    "一起",
    "一点",
    "一下",
    "一直",
    "唯一",
    "第一",
    "十分",
    "千万不要",
    "万万没想到",
    "万众一心",
    "一心一意",
    "三五成群",
    "三三两两",
    "千千万万",
    "一五一十",
    "十万火急",
    "二百五",
    "三四十岁",
    "十四五",
    "二〇二〇年",
    "3万5",
    "5千3万",
]


@pytest.mark.parametrize("word", NOT_NUMBERS)
def test_ordinary_words_are_not_numbers(word):
    assert chinese_numbers_to_digits(word) == word
    sentence = f"我觉得{word}的说法"
    assert chinese_numbers_to_digits(sentence) == sentence


def test_thousands_separators():
    assert drop_thousands_separators("1,000,000") == "1000000"
    assert drop_thousands_separators("costs $1,234.50 now") == "costs $1234.50 now"
    for text in ("1,2", "1,2,3", "1,0000", "1,000,00", "100，200", "v1.1,000"):
        assert drop_thousands_separators(text) == text, text


def test_numbers_in_normalize_text():
    cfg = CleanConfig(numbers=True)
    text = "营收１，２３０，０００元, 1,000,000 人, 100万 次, 统一一些"
    out = normalize_text(text, cfg)
    assert "1000000 人" in out and "1000000 次" in out and "统一一些" in out
    assert normalize_numbers("共1,000万") == "共10000000"
    assert normalize_text("100万", DEFAULT) == "100万"  # off by default


def boilerplate_cfg(**kw) -> BoilerplateConfig:
    return BoilerplateConfig(enabled=True, **{"min_docs": 3, "min_share": 0.2, **kw})


def test_boilerplate_line_shared_by_many_documents_is_removed():
    footer = "Copyright 2024 Example Hospital. All rights reserved."
    docs = [f"Patient {i} reports headache.\n{footer}" for i in range(10)]
    docs.append("Rare line A\nRare line B")
    docs.append("Rare line A\nOther")
    detector = BoilerplateDetector(boilerplate_cfg())
    for doc in docs:
        detector.observe(doc)
    found = detector.finish()
    assert len(found) == 1
    assert detector.strip(docs[0]) == ("Patient 0 reports headache.", 1)
    assert detector.strip(docs[-2]) == ("Rare line A\nRare line B", 0)  # in 2 docs: kept
    # matching ignores case and spacing
    respaced = "copyright  2024 example hospital. ALL rights reserved."
    assert detector.strip(respaced)[1] == 1


def test_boilerplate_counts_a_line_once_per_document_and_honours_limits():
    detector = BoilerplateDetector(boilerplate_cfg())
    for _ in range(3):
        detector.observe("same\nsame\nsame")
    for i in range(20):
        detector.observe(f"doc {i}")
    assert detector.finish() == set()  # in 3 of 23 documents: under the 20% share

    long_line = "x" * 50
    detector = BoilerplateDetector(boilerplate_cfg(max_line_chars=40))
    for i in range(5):
        detector.observe(f"{long_line}\nshort\nbody {i}")
    detector.finish()
    assert detector.strip(f"{long_line}\nshort\nbody") == (f"{long_line}\nbody", 1)


def test_boilerplate_memory_stays_bounded():
    detector = BoilerplateDetector(boilerplate_cfg(), max_tracked=100)
    for i in range(1000):
        detector.observe(f"unique {i}\nshared footer")
        assert len(detector._counts) <= 101
    detector.finish()
    doc = "body\nshared footer"
    assert detector.strip(doc) == ("body", 1)


def test_strip_before_finish_is_a_programming_error():
    with pytest.raises(RuntimeError):
        BoilerplateDetector(boilerplate_cfg()).strip("x")


def test_span_records_keep_valid_offsets():
    text = "ＡＢＣ公司\t在\x07北京\n成立。ﬁne ①"
    spans = [[0, 5, "ORG"], [8, 10, "LOC"]]
    assert text[0:5] == "ＡＢＣ公司" and text[8:10] == "北京"
    rec = {"id": "1", "text": text, "label": None, "spans": spans}
    out = normalize_record(rec, CleanConfig(html=True, numbers=True, lowercase=True))
    assert len(out["text"]) == len(text)
    assert out["text"][0:5] == "ABC公司" and out["text"][8:10] == "北京"
    assert out["text"] == "ABC公司 在 北京 成立。ﬁne 1"  # 'ﬁ' → 'fi' would shift offsets
    assert out["spans"] == spans and rec["text"] == text  # the input is left as it was


def test_records_without_spans_get_full_normalization():
    rec = {"id": "1", "text": "ＡＢＣ  &amp;\n\n x", "label": "a"}
    assert normalize_record(rec, DEFAULT)["text"] == "ABC &\nx"


def run_clean(records, cfg):
    buf = io.StringIO()
    out, tally = clean(records, cfg, Quarantine(buf))
    return out, tally, [json.loads(x) for x in buf.getvalue().splitlines()]


def test_clean_strips_boilerplate_and_quarantines_what_is_left_empty():
    footer = "点击关注我们的公众号"
    records = [
        {"id": str(i), "text": f"第{i}条评论很好\n{footer}", "label": "pos"} for i in range(6)
    ]
    records.append({"id": "only-footer", "text": footer, "label": "neg"})
    records.append({"id": "ner", "text": f"张三\n{footer}", "label": None, "spans": [[0, 2, "P"]]})
    cfg = CleanConfig(boilerplate=boilerplate_cfg())
    out, tally, quarantined = run_clean(records, cfg)
    by_id = {r["id"]: r for r in out}
    assert by_id["0"]["text"] == "第0条评论很好"
    assert by_id["ner"]["text"] == f"张三 {footer}"  # spans: offsets kept, nothing removed
    assert [q["record"]["id"] for q in quarantined] == ["only-footer"]
    assert tally.as_dict() == {"step": "clean", "in": 8, "out": 7, "dropped": {"too_short": 1}}


def test_clean_length_limits():
    records = [{"id": str(i), "text": "x" * i, "label": "a"} for i in (1, 5, 9)]
    out, tally, quarantined = run_clean(records, CleanConfig(min_chars=2, max_chars=8))
    assert [r["id"] for r in out] == ["5"]
    assert tally.dropped == {"too_short": 1, "too_long": 1}
    assert {q["reason"] for q in quarantined} == {"too_short", "too_long"}
