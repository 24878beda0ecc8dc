"""Generation metrics: agreement with sacrebleu / rouge-score, Chinese tokenisation, edge cases."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from verticalize.evaluate.text_metrics import (
    bleu,
    exact_match,
    generation_metrics,
    is_chinese,
    perplexity,
    rouge,
)

WORDS = (
    "the contract term ends when either party gives notice in writing and the supplier "
    "shall deliver goods within thirty days of the order date unless agreed otherwise"
).split()
HANZI = list("北京是中国的首都合同期限届满时双方应当书面通知供应商在订单日期后三十天内交付货物")


def _edit(tokens: list[str], vocab: list[str], rng: random.Random) -> list[str]:
    out = list(tokens)
    for _ in range(rng.randint(0, 3)):
        op = rng.choice(("sub", "del", "ins"))
        i = rng.randrange(len(out))
        if op == "sub":
            out[i] = rng.choice(vocab)
        elif op == "del" and len(out) > 1:
            del out[i]
        else:
            out.insert(i, rng.choice(vocab))
    return out


def _english_pairs(n: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs = [[rng.choice(WORDS) for _ in range(rng.randint(6, 15))] for _ in range(n)]
    hyps = [_edit(r, WORDS, rng) for r in refs]
    return [" ".join(h) for h in hyps], [" ".join(r) for r in refs]


def _chinese_pairs(n: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs = [[rng.choice(HANZI) for _ in range(rng.randint(6, 15))] for _ in range(n)]
    hyps = [_edit(r, HANZI, rng) for r in refs]
    return ["".join(h) for h in hyps], ["".join(r) for r in refs]


def test_is_chinese_threshold() -> None:
    assert is_chinese(["北京是中国的首都"])
    assert not is_chinese(["the capital of China is Beijing"])
    # 3 ideographs among 10 non-space characters: exactly at the 30% line.
    assert is_chinese(["北京市 abcdefg"])
    assert not is_chinese(["北京 abcdefgh"])
    assert not is_chinese([])


def test_bleu_matches_sacrebleu_13a_on_english() -> None:
    hyps, refs = _english_pairs()
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score / 100
    assert 0.0 < expected < 1.0
    assert bleu(hyps, refs) == pytest.approx(expected)


def test_bleu_matches_sacrebleu_zh_on_chinese() -> None:
    hyps, refs = _chinese_pairs()
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score / 100
    assert 0.0 < expected < 1.0
    assert bleu(hyps, refs) == pytest.approx(expected)
    # Without spaces, 13a sees each Chinese sentence as one token: a different, much lower score.
    whole_sentence = sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score / 100
    assert bleu(hyps, refs) > whole_sentence + 0.1
    assert bleu(hyps, refs, chinese=False) == pytest.approx(whole_sentence)


def test_bleu_perfect_and_empty() -> None:
    _, refs = _english_pairs(seed=1)
    assert bleu(refs, refs) == pytest.approx(1.0)
    assert bleu([], []) == 0.0


def test_rouge_matches_rouge_score_on_english() -> None:
    hyps, refs = _english_pairs(seed=2)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    scores = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    got = rouge(hyps, refs)
    for ours, theirs in (("rouge_1", "rouge1"), ("rouge_2", "rouge2"), ("rouge_l", "rougeL")):
        expected = sum(s[theirs].fmeasure for s in scores) / len(scores)
        assert 0.0 < expected < 1.0
        assert got[ours] == pytest.approx(expected)


def test_rouge_chinese_is_character_level() -> None:
    hyp, ref = "北京是中国的首都", "北京是首都"
    # Unigrams: all 5 reference characters appear in the 8-character hypothesis.
    p1, r1 = 5 / 8, 5 / 5
    # Bigrams: 北京, 京是, 首都 of hyp's 7 and ref's 4 bigrams.
    p2, r2 = 3 / 7, 3 / 4
    # LCS is 北京是首都 itself, length 5.
    pl, rl = 5 / 8, 5 / 5
    got = rouge([hyp], [ref])
    assert got["rouge_1"] == pytest.approx(2 * p1 * r1 / (p1 + r1))  # 10/13
    assert got["rouge_2"] == pytest.approx(2 * p2 * r2 / (p2 + r2))  # 6/11
    assert got["rouge_l"] == pytest.approx(2 * pl * rl / (pl + rl))
    # rouge-score's own tokenizer drops non-ASCII text, so it would report nothing.
    default = rouge_scorer.RougeScorer(["rouge1", "rougeL"]).score(ref, hyp)
    assert default["rouge1"].fmeasure == 0.0 and default["rougeL"].fmeasure == 0.0


def test_rouge_chinese_keeps_latin_words_lowercased() -> None:
    got = rouge(["合同ID为AB12"], ["合同id为ab12。"], chinese=True)
    assert got["rouge_1"] == pytest.approx(1.0)
    assert rouge([], []) == {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0}


def test_exact_match_normalisation() -> None:
    refs = ["Paris", "北京。", "ABC 123", "yes", "New  York"]
    hyps = ["paris.", "北京", "ＡＢＣ　１２３", "no", " new york! "]
    assert exact_match(hyps, refs) == pytest.approx(4 / 5)
    assert exact_match(["北京！"], ["北京"]) == 1.0
    assert exact_match(["Paris is"], ["Paris"]) == 0.0
    assert exact_match([], []) == 0.0


def test_perplexity() -> None:
    assert perplexity(20.0, 10) == pytest.approx(math.exp(2.0))
    assert perplexity(0.0, 5) == pytest.approx(1.0)
    assert perplexity(3.0, 0) == float("inf")
    huge = perplexity(1e9, 1)
    assert math.isfinite(huge) and huge == pytest.approx(math.exp(700))


def test_length_mismatch_raises() -> None:
    for fn in (bleu, rouge, exact_match, generation_metrics):
        with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
            fn(["a", "b"], ["a"])


def test_generation_metrics_uses_one_language_decision() -> None:
    hyps, refs = _chinese_pairs(seed=3)
    got = generation_metrics(hyps, refs)
    assert got["chinese"] is True and got["n"] == len(hyps)
    assert got["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score / 100
    )
    assert got["rouge_1"] == pytest.approx(rouge(hyps, refs, chinese=True)["rouge_1"])
    assert got["rouge_1"] > 0.5
    assert got["exact_match"] == pytest.approx(exact_match(hyps, refs))

    en_hyps, en_refs = _english_pairs(seed=3)
    en = generation_metrics(en_hyps, en_refs)
    assert en["chinese"] is False
    assert set(en) == {"bleu", "rouge_1", "rouge_2", "rouge_l", "exact_match", "n", "chinese"}
