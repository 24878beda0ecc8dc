"""Generation-task metrics (E1): BLEU, ROUGE, exact match, perplexity.

BLEU comes from sacrebleu and ROUGE from rouge-score; this module only chooses the
tokenisation (Chinese vs. whitespace languages) and the aggregation.
"""

from __future__ import annotations

import math
import re
import unicodedata

import sacrebleu
from rouge_score import rouge_scorer

# CJK Unified Ideographs, Extension A and the compatibility block.
_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK_OR_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+")
_TRAILING_PUNCT = ".。!！?？…"
# exp(709) is the largest power float64 can hold; cap below it so huge losses stay finite.
_MAX_EXPONENT = 700.0


def _check_lengths(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} hypotheses but {len(references)} references; "
            "pass one reference per hypothesis"
        )


def is_chinese(texts: list[str]) -> bool:
    """True when CJK ideographs make up at least 30% of the non-space characters."""
    chars = sum(len(t) - sum(c.isspace() for c in t) for t in texts)
    if chars == 0:
        return False
    return sum(len(_CJK_CHAR.findall(t)) for t in texts) / chars >= 0.3


def _resolve_chinese(references: list[str], chinese: bool | None) -> bool:
    return is_chinese(references) if chinese is None else chinese


def bleu(hypotheses: list[str], references: list[str], chinese: bool | None = None) -> float:
    """Corpus BLEU on a 0–1 scale; `chinese=None` detects the language from the references."""
    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    tokenize = "zh" if _resolve_chinese(references, chinese) else "13a"
    return float(sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score) / 100


class ChineseCharTokenizer:
    """Tokenizer for rouge-score: one token per CJK character, latin/digit runs as words.

    rouge-score's default tokenizer drops every non-ASCII character, which would score
    all Chinese text as empty.
    """

    def tokenize(self, text: str) -> list[str]:
        # NFKC folds full-width letters and digits to ASCII so they match half-width ones.
        return _CJK_OR_WORD.findall(unicodedata.normalize("NFKC", text).lower())


def rouge(
    hypotheses: list[str], references: list[str], chinese: bool | None = None
) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the pairs as `rouge_1`, `rouge_2`, `rouge_l`."""
    _check_lengths(hypotheses, references)
    if not hypotheses:
        return {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0}
    tokenizer = ChineseCharTokenizer() if _resolve_chinese(references, chinese) else None
    scorer = rouge_scorer.RougeScorer(
        ["rouge1", "rouge2", "rougeL"], use_stemmer=False, tokenizer=tokenizer
    )
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, ref in zip(hypotheses, references, strict=True):
        # rouge-score takes (target, prediction): reference first.
        scores = scorer.score(ref, hyp)
        for key in totals:
            totals[key] += scores[key].fmeasure
    n = len(hypotheses)
    return {
        "rouge_1": totals["rouge1"] / n,
        "rouge_2": totals["rouge2"] / n,
        "rouge_l": totals["rougeL"] / n,
    }


def normalize_answer(text: str) -> str:
    """NFKC, casefold, collapse whitespace, strip surrounding space and trailing punctuation."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.rstrip(_TRAILING_PUNCT).rstrip()


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """Share of pairs equal after `normalize_answer`; 0.0 for empty input."""
    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    hits = sum(
        normalize_answer(h) == normalize_answer(r)
        for h, r in zip(hypotheses, references, strict=True)
    )
    return hits / len(hypotheses)


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token); inf when there are no tokens."""
    if n_tokens <= 0:
        return float("inf")
    return math.exp(min(nll_sum / n_tokens, _MAX_EXPONENT))


def generation_metrics(hypotheses: list[str], references: list[str]) -> dict:
    """BLEU, ROUGE-1/2/L, exact match and n, with one language decision for BLEU and ROUGE."""
    _check_lengths(hypotheses, references)
    chinese = is_chinese(references)
    return {
        "bleu": bleu(hypotheses, references, chinese=chinese),
        **rouge(hypotheses, references, chinese=chinese),
        "exact_match": exact_match(hypotheses, references),
        "n": len(hypotheses),
        "chinese": chinese,
    }
