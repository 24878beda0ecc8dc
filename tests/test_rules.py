"""Validation rules (D2): each rule kind passes good records, names the first broken rule,
skips absent fields (except `required`), and catches real mojibake and junk."""

import json

import pytest
from pydantic import TypeAdapter

from verticalize.config import Rule
from verticalize.data.rules import (
    RuleSet,
    check_record,
    control_share,
    mojibake_share,
    script_share,
)

RULES = TypeAdapter(list[Rule])


def rules(*specs: dict) -> list:
    return RULES.validate_python(list(specs))


def record(text: str = "fine text", label: str | None = "pos", **meta) -> dict:
    return {"id": "s0:1", "text": text, "label": label, "source": "a.csv", "line": 1, "meta": meta}


def broken(rec: dict, *specs: dict, labels: list[str] | None = None):
    return check_record(rec, rules(*specs), labels)


@pytest.mark.parametrize(
    "spec, good, bad",
    [
        ({"rule": "required", "field": "age"}, {"age": "3"}, {"age": "  "}),
        ({"rule": "type", "field": "age", "type": "int"}, {"age": "12"}, {"age": "12.5"}),
        ({"rule": "type", "field": "age", "type": "int"}, {"age": 12}, {"age": True}),
        ({"rule": "type", "field": "w", "type": "float"}, {"w": "1.5e3"}, {"w": "1.5kg"}),
        ({"rule": "type", "field": "w", "type": "float"}, {"w": 3}, {"w": "nan"}),
        ({"rule": "type", "field": "ok", "type": "bool"}, {"ok": "Yes"}, {"ok": "maybe"}),
        ({"rule": "type", "field": "ok", "type": "bool"}, {"ok": False}, {"ok": 2}),
        ({"rule": "type", "field": "name", "type": "str"}, {"name": "12"}, {"name": 12}),
        (
            {"rule": "regex", "field": "code", "pattern": r"[A-Z]\d{3}"},
            {"code": "A123"},
            {"code": "A1234"},
        ),
        (
            {"rule": "date", "field": "d", "format": "%Y-%m-%d"},
            {"d": "2024-02-29"},
            {"d": "2023-02-29"},
        ),
        (
            {"rule": "date", "field": "d", "format": "%B %d, %Y"},
            {"d": "March 5, 2024"},
            {"d": "5/3/2024"},
        ),
        ({"rule": "range", "field": "age", "min": 0, "max": 120}, {"age": "120"}, {"age": "121"}),
        ({"rule": "range", "field": "age", "min": 0}, {"age": 0.0}, {"age": -1}),
        ({"rule": "range", "field": "age", "max": 10}, {"age": "7"}, {"age": "seven"}),
        (
            {"rule": "length", "field": "note", "min": 2, "max": 4},
            {"note": "abcd"},
            {"note": "abcde"},
        ),
        ({"rule": "length", "field": "note", "min": 2}, {"note": "ab"}, {"note": "a"}),
    ],
)
def test_rule_kinds_on_meta_fields(spec, good, bad):
    assert broken(record(**good), spec) is None
    v = broken(record(**bad), spec)
    assert v is not None and v.rule == spec["rule"] and v.field == spec["field"]
    assert v.value == next(iter(bad.values())) or v.value == str(next(iter(bad.values())))
    assert v.detail and ";" in v.detail  # a sentence with its fix after the semicolon


def test_label_in_set_uses_the_label_set():
    spec = {"rule": "label_in_set"}
    assert broken(record(label="pos"), spec, labels=["pos", "neg"]) is None
    v = broken(record(label="meh"), spec, labels=["pos", "neg"])
    assert v.rule == "label_in_set" and v.field == "label" and v.value == "meh"
    assert "data.labels" in v.detail
    assert broken(record(label="meh"), spec, labels=None) is None  # no set, nothing to check


def test_text_and_label_fields_are_read_from_the_record():
    assert broken(record(text="ab"), {"rule": "length", "min": 3}).field == "text"
    v = broken(record(label=None), {"rule": "required", "field": "label"})
    assert v.field == "label" and v.value is None


def test_first_broken_rule_wins_and_uses_its_name():
    specs = (
        {"rule": "required", "field": "age"},
        {"rule": "range", "field": "age", "max": 10, "name": "child_age"},
        {"rule": "length", "max": 3},
    )
    v = broken(record(text="too long", age="12"), *specs)
    assert v.rule == "child_age" and v.field == "age" and "[…, 10]" in v.detail
    assert broken(record(text="too long", age="9"), *specs).rule == "length"


def test_absent_fields_fail_only_the_required_rule():
    rec = record()  # no metadata at all
    for spec in (
        {"rule": "type", "field": "age", "type": "int"},
        {"rule": "regex", "field": "age", "pattern": r"\d+"},
        {"rule": "date", "field": "age", "format": "%Y"},
        {"rule": "range", "field": "age", "min": 1},
        {"rule": "length", "field": "age", "min": 1},
        {"rule": "script", "field": "age", "script": "han"},
        {"rule": "garbage", "field": "age"},
    ):
        assert broken(rec, spec) is None, spec
        assert broken(record(age=None), spec) is None, spec
        assert broken(record(age=""), spec) is None, spec  # an empty CSV cell is absent
    v = broken(rec, {"rule": "required", "field": "age"})
    assert v.rule == "required" and v.field == "age" and "missing" in v.detail
    assert broken({"text": "no meta key", "label": "x"}, {"rule": "required", "field": "a"})


def test_rule_set_compiles_once_and_checks_many():
    rule_set = RuleSet(rules({"rule": "regex", "field": "code", "pattern": r"\d{4}"}))
    results = [rule_set.check(record(code=c)) for c in ("1234", "12a4", 5678)]
    assert results[0] is None and results[1].value == "12a4" and results[2] is None


def test_script_share_chinese_vs_english():
    assert script_share("今天天气很好", "han") == 1.0
    assert script_share("The weather is nice today", "han") == 0.0
    assert script_share("用 Python 写代码", "han") == pytest.approx(4 / 10)
    assert script_share("123 !!! 456", "latin") is None
    spec = {"rule": "script", "script": "han", "min_share": 0.5}
    assert broken(record(text="这个药效果很好，没有副作用 OK"), spec) is None
    v = broken(record(text="This drug works well, 很好"), spec)
    assert v.rule == "script" and "han" in v.detail
    assert "no letters" in broken(record(text="12345 !!"), spec).detail
    assert broken(record(text="Привет мир"), {"rule": "script", "script": "cyrillic"}) is None
    assert broken(record(text="こんにちは"), {"rule": "script", "script": "kana"}) is None
    assert broken(record(text="안녕하세요"), {"rule": "script", "script": "hangul"}) is None
    assert broken(record(text="مرحبا بالعالم"), {"rule": "script", "script": "arabic"}) is None


def test_garbage_catches_utf8_read_as_latin1():
    text = "Le café était très bon, à bientôt !"
    wrong = text.encode("utf-8").decode("latin-1")  # 'cafÃ©', 'Ã©tait', 'trÃ¨s'
    assert mojibake_share(text) == 0.0 and mojibake_share(wrong) > 0.1
    assert broken(record(text=text), {"rule": "garbage"}) is None
    v = broken(record(text=wrong), {"rule": "garbage"})
    assert v.rule == "garbage" and "mojibake" in v.detail and "encoding" in v.detail
    assert broken(record(text="cafÃ© au lait"), {"rule": "garbage"}) is not None
    smart_quote = "It’s “fine” — really".encode().decode("cp1252", "ignore")  # 'Itâ€™s â€œfineâ€'
    assert broken(record(text=smart_quote), {"rule": "garbage"}) is not None


def test_garbage_catches_gbk_read_as_utf8():
    wrong = "这家医院的服务很好".encode("gbk").decode("utf-8", "replace")
    assert "\ufffd" in wrong and mojibake_share(wrong) > 0.5
    assert "mojibake" in broken(record(text=wrong), {"rule": "garbage"}).detail
    assert broken(record(text="这家医院的服务很好"), {"rule": "garbage"}) is None


def test_garbage_leaves_legitimate_accents_alone():
    for text in ("SÃO PAULO é grande", "Straße und Größe", "naïve façade, voilà !", "Ça va ?"):
        assert broken(record(text=text), {"rule": "garbage"}) is None, text


def test_garbage_catches_repeats_and_control_characters():
    v = broken(record(text="great" + "!" * 30), {"rule": "garbage"})
    assert "'!' repeated 30 times" in v.detail
    assert broken(record(text="great" + "!" * 20), {"rule": "garbage"}) is None
    assert broken(record(text="word" + " " * 40 + "word"), {"rule": "garbage"}) is None
    assert broken(record(text="a!!!!!"), {"rule": "garbage", "max_repeat": 4}) is not None

    controls = "abc\x00\x01\x02def" + "lorem ipsum " * 5
    assert control_share(controls) == pytest.approx(3 / len(controls))
    assert "control" in broken(record(text=controls), {"rule": "garbage"}).detail
    assert broken(record(text="tabs\tand\nnewlines\r\n" * 5), {"rule": "garbage"}) is None
    undecodable = "text with bad bytes \udcff\udcfe\udc80 " + "lorem ipsum " * 5
    assert "undecodable" in broken(record(text=undecodable), {"rule": "garbage"}).detail


def test_violation_value_is_short_and_writable_as_utf8():
    v = broken(record(text="x" * 1000), {"rule": "length", "max": 10})
    assert len(v.value) == 200 and v.value.endswith("…")
    v = broken(record(text="bad \udcff" * 20), {"rule": "garbage"})
    json.dumps(v.value, ensure_ascii=False).encode("utf-8")  # no lone surrogate left
    assert "\\udcff" in v.value
    v = broken(record(tags=["a"] * 100), {"rule": "type", "field": "tags", "type": "str"})
    assert isinstance(v.value, str) and len(v.value) <= 200
