"""The feature-based CRF baseline for NER (M2): classic hand-made word features + a linear-chain
CRF (CRFsuite, L-BFGS with elastic-net regularisation).

Words are those of `verticalize.tasks.ner_tags.word_spans` (one CJK character is one word), so
for Chinese the character n-grams of the neighbourhood carry most of the signal; for
alphabetic languages it is the word itself, its affixes and shape.
"""

from __future__ import annotations

import re
import time

import sklearn_crfsuite

from verticalize.data.tags import SCHEMES, spans_to_word_tags, word_spans, word_tags_to_spans

_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_SHAPE_RUN = re.compile(r"(.)\1+")


def _shape(word: str) -> str:
    """Compressed word shape: Xx for letters by case, d for digits, C for a CJK character,
    any other character as itself; runs collapse ("McDonald's" → "XxXx'x", "2024" → "d")."""
    out = []
    for ch in word:
        if _CJK_CHAR.match(ch):
            out.append("C")
        elif ch.isdigit():
            out.append("d")
        elif ch.isalpha():
            out.append("X" if ch.isupper() else "x")
        else:
            out.append(ch)
    return _SHAPE_RUN.sub(r"\1", "".join(out))


def _length_bucket(n: int) -> str:
    if n <= 3:
        return str(n)
    if n <= 5:
        return "4-5"
    if n <= 8:
        return "6-8"
    return "9+"


def _brief(word: str) -> dict:
    """What a neighbour contributes: lower-cased form, shape, title case, CJK."""
    return {
        "lower": word.lower(),
        "shape": _shape(word),
        "title": word.istitle(),
        "cjk": bool(_CJK_CHAR.fullmatch(word)),
    }


def word_features(text: str, words: list[tuple[int, int]]) -> list[dict]:
    """CRFsuite feature dicts, one per word (`words` are character offsets into `text`)."""
    tokens = [text[s:e] for s, e in words]
    briefs = [_brief(t) for t in tokens]
    lowers = [b["lower"] for b in briefs]
    n = len(tokens)
    feats = []
    for i, (tok, (start, _end)) in enumerate(zip(tokens, words, strict=True)):
        low = lowers[i]
        f: dict = {
            "bias": 1.0,
            "w": low,
            "shape": briefs[i]["shape"],
            "len": _length_bucket(len(tok)),
            "title": tok.istitle(),
            "upper": tok.isupper(),
            "digit": tok.isdigit(),
            "has_digit": any(c.isdigit() for c in tok),
            "has_punct": any(not c.isalnum() for c in tok),
            "cjk": briefs[i]["cjk"],
            # glued to the previous word (no space): "'s", "#tag", "AT&T" pieces
            "glued": i > 0 and words[i - 1][1] == start,
        }
        for k in (1, 2, 3):
            if len(low) >= k:
                f[f"pre{k}"] = low[:k]
                f[f"suf{k}"] = low[-k:]
        for d in (-2, -1, 1, 2):
            j = i + d
            if 0 <= j < n:
                b = briefs[j]
                f[f"{d:+d}:w"] = b["lower"]
                f[f"{d:+d}:shape"] = b["shape"]
                f[f"{d:+d}:title"] = b["title"]
                f[f"{d:+d}:cjk"] = b["cjk"]
        # bigrams of neighbouring words: for Chinese, character bigrams are the main signal
        if i > 1:
            f["-2|-1"] = f"{lowers[i - 2]}|{lowers[i - 1]}"
        if i > 0:
            f["-1|0"] = f"{lowers[i - 1]}|{low}"
        if i + 1 < n:
            f["0|+1"] = f"{low}|{lowers[i + 1]}"
        if i + 2 < n:
            f["+1|+2"] = f"{lowers[i + 1]}|{lowers[i + 2]}"
        if i == 0:
            f["BOS"] = True
        if i == n - 1:
            f["EOS"] = True
        feats.append(f)
    return feats


def feature_crf(
    train: list[dict],
    test: list[dict],
    scheme: str = "bio",
    c1: float = 0.1,
    c2: float = 0.05,
    max_iterations: int = 150,
    seed: int = 0,
) -> dict:
    """Fit a linear-chain CRF on the word tags of `train` records' spans, tag `test` records.

    Returns {"predictions": [[[start, end, TYPE], …] per test record, in order], "fit_seconds",
    "predict_seconds", "params": {…}}. L-BFGS training is deterministic: the same records give
    the same model and predictions (`seed` is recorded; CRFsuite's L-BFGS draws no random
    numbers). With no non-empty training text nothing is fitted and nothing predicted."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
    x_train, y_train = [], []
    misaligned = 0
    types: set[str] = set()
    for r in train:
        words = word_spans(r["text"])
        if not words:
            continue
        spans = [list(s[:3]) for s in r.get("spans") or []]
        tags, bad = spans_to_word_tags(words, spans, scheme)
        misaligned += bad
        types.update(t.partition("-")[2] for t in tags if t != "O")
        x_train.append(word_features(r["text"], words))
        y_train.append(tags)

    params = {
        "algorithm": "lbfgs",
        "c1": c1,
        "c2": c2,
        "max_iterations": max_iterations,
        "all_possible_transitions": True,
        "scheme": scheme,
        "seed": seed,
        "train_sequences": len(x_train),
        "train_words": sum(len(x) for x in x_train),
        "misaligned_spans": misaligned,
        "types": sorted(types),
    }
    start = time.perf_counter()
    crf = None
    if x_train:  # all-O training data is fitted too: the model then tags everything O
        crf = sklearn_crfsuite.CRF(
            algorithm="lbfgs",
            c1=c1,
            c2=c2,
            max_iterations=max_iterations,
            all_possible_transitions=True,
        )
        crf.fit(x_train, y_train)
        params["n_features"] = len(crf.state_features_)
    fit_s = time.perf_counter() - start

    start = time.perf_counter()
    test_words = [word_spans(r["text"]) for r in test]
    predictions: list[list] = [[] for _ in test]
    todo = [i for i, w in enumerate(test_words) if w]
    if crf is not None and todo:
        x_test = [word_features(test[i]["text"], test_words[i]) for i in todo]
        for i, tags in zip(todo, crf.predict(x_test), strict=True):
            predictions[i] = word_tags_to_spans(test_words[i], list(tags), scheme)
    predict_s = time.perf_counter() - start
    return {
        "predictions": predictions,
        "fit_seconds": round(fit_s, 3),
        "predict_seconds": round(predict_s, 3),
        "params": params,
    }
