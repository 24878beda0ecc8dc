"""Adversarial evaluation for text classification (E4): FGSM on the input embeddings and a
greedy word-level substitution attack; attack success rate and scores under attack.

Both attacks take the classifier as `(model, tokenizer)` and records as `{"text", "label"}`
dicts. The model is put in eval mode (dropout off) while attacking and left in the mode it
came in; no parameter gradient is computed or kept.

FGSM (`fgsm`): one signed-gradient step on the token embeddings, away from the gold label.
epsilon is in units of the model's embedding scale: the step on every coordinate of a real
token's embedding is `epsilon * rms(E) * sign(grad)`, with `rms(E)` the root mean square of
all entries of the input-embedding matrix E. A token's perturbation then has L2 norm
`epsilon * sqrt(mean_v ||E_v||^2)`, so epsilon = 1 moves a token by about the length of a
typical embedding, whatever the model: the same epsilon means the same thing across models.
Only real tokens move: padding and special tokens ([CLS], [SEP], <s>, ...) are left as they
are; an unknown-word token ([UNK]) stands for a real word and moves. The step is strong: on
all-MiniLM-L6-v2 fine-tuned briefly on drug reviews, epsilon 0.02 flips ~20% of the correct
predictions, 0.1 ~90%, 0.5 all of them; useful values lie around 0.01-0.1.

Substitution (`substitution_attack`): a simplified TextFooler. For each of the first `n`
correctly classified records, words are ranked by importance and, in that order, each is
replaced by the one of
its `candidates` nearest neighbours in the model's own input-embedding space (cosine) that
lowers the gold-class probability most, until the prediction flips or `max_words` words were
replaced. Only words inside the first `max_length` tokens are attacked (the model never sees
the rest). Words are whitespace-separated tokens (their leading/trailing punctuation is kept
and only the alphabetic core is replaced); for CJK text (more than 30% CJK characters among
the non-space characters) every CJK character is a word. Substitutes are whole-word,
alphabetic vocabulary entries (for WordPiece: no "##" pieces, no special tokens; for CJK
text: single CJK characters), never the word itself or a case variant of it. A word the
tokenizer splits into several sub-tokens is represented by the mean of their embeddings.

Importance (`rank`): "gradient" (default) scores a word by gradient x input on its tokens'
embeddings — |sum over its tokens of grad(log p_gold) . embedding| — from one forward and
backward pass per text (as in HotFlip / saliency attacks); "deletion" (TextFooler's) by the
drop of the gold-class probability when the word is deleted, one forward per word. Ranking is
most of the attack's cost: on drug reviews at 64 tokens that is ~60 forwards a text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from verticalize.metrics import classification_metrics
from verticalize.tasks.classification.encode import EncodedRecords, make_collate

CJK_SHARE = 0.3  # a text with more CJK characters than this (of its non-space ones) is CJK
_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]"
)
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
_WORD_MARKERS = ("\u2581", "\u0120")  # SentencePiece "▁" and byte-level BPE "Ġ" word starts


class _EvalMode:
    """Eval mode and frozen parameters for the duration of an attack; restored afterwards."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.training = self.model.training
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        for p, _ in self.flags:
            p.requires_grad_(False)
        return self.model

    def __exit__(self, *exc):
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.model.train(self.training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _scores(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    m = classification_metrics(gold, pred, labels)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


# ---------------------------------------------------------------- FGSM


def embedding_scale(model) -> float:
    """Root mean square of the input-embedding matrix entries: FGSM's unit of epsilon."""
    w = model.get_input_embeddings().weight.detach().float()
    return float(w.pow(2).mean().sqrt())


def fgsm(
    model,
    tokenizer,
    records: list[dict],
    labels: list[str],
    epsilon: float,
    max_length: int,
    batch_size: int = 32,
) -> dict:
    """Fast gradient sign attack on the input embeddings of real (non-pad, non-special) tokens.

    Returns {"epsilon", "accuracy", "macro_f1" (under attack), "clean_accuracy",
    "clean_macro_f1", "success_rate", "n"}; success_rate is the share of the correctly
    classified records whose prediction the attack changes (0 when none is correct)."""
    if not records:
        zero = ("accuracy", "macro_f1", "clean_accuracy", "clean_macro_f1", "success_rate")
        return {"epsilon": float(epsilon), **dict.fromkeys(zero, 0.0), "n": 0}
    label2id = {lab: i for i, lab in enumerate(labels)}
    data = EncodedRecords(records, tokenizer, label2id, max_length)
    collate = make_collate(tokenizer.pad_token_id)
    # [CLS], [SEP], <s>, padding ...; an unknown-word token stands for a real word and moves
    frozen = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    special = torch.tensor(sorted(frozen), dtype=torch.long)
    embed = model.get_input_embeddings()
    step = float(epsilon) * embedding_scale(model)
    device = _device(model)
    clean = np.zeros(len(data), dtype=np.int64)
    attacked = np.zeros(len(data), dtype=np.int64)
    order = sorted(range(len(data)), key=lambda i: len(data[i]["input_ids"]))
    with _EvalMode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate([data[i] for i in idx]).items()}
            ids, mask, gold = batch["input_ids"], batch["attention_mask"], batch["labels"]
            with torch.no_grad():
                base = embed(ids)
            x = base.detach().clone().requires_grad_(True)
            logits = model(inputs_embeds=x, attention_mask=mask).logits
            loss = F.cross_entropy(logits.float(), gold, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            real = mask.bool() & ~torch.isin(ids, special.to(device))
            delta = step * grad.sign() * real.unsqueeze(-1).to(grad.dtype)
            with torch.no_grad():
                adv_logits = model(inputs_embeds=base + delta, attention_mask=mask).logits
            clean[idx] = logits.detach().argmax(-1).cpu().numpy()
            attacked[idx] = adv_logits.argmax(-1).cpu().numpy()
    gold = [r["label"] for r in records]
    correct = np.array([labels[c] == g for c, g in zip(clean, gold, strict=True)], dtype=bool)
    flipped = correct & (attacked != clean)
    under = _scores(gold, [labels[i] for i in attacked], labels)
    before = _scores(gold, [labels[i] for i in clean], labels)
    return {
        "epsilon": float(epsilon),
        **under,
        "clean_accuracy": before["accuracy"],
        "clean_macro_f1": before["macro_f1"],
        "success_rate": float(flipped.sum() / correct.sum()) if correct.any() else 0.0,
        "n": len(records),
    }


# ---------------------------------------------------------------- substitution


def is_cjk_text(text: str) -> bool:
    """More than CJK_SHARE of the non-space characters are CJK (Chinese, Japanese, Korean)."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(bool(_CJK.match(c)) for c in chars) / len(chars) > CJK_SHARE


@dataclass
class _Vocabulary:
    """Eligible substitutes: whole-word alphabetic (Latin) or single-CJK-character entries,
    with their unit-normalised input embeddings, computed once per attack."""

    words: list[str]
    ids: torch.Tensor
    unit: torch.Tensor  # (len(words), dim), rows of norm 1
    lower: dict[str, list[int]]  # lowercased word -> positions in `words`


def _vocabularies(tokenizer, weight: torch.Tensor) -> tuple[_Vocabulary, _Vocabulary]:
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    marked = sum(t.startswith(_WORD_MARKERS) for t in vocab)
    pieces = sum(t.startswith("##") for t in vocab)
    latin: dict[str, int] = {}
    cjk: dict[str, int] = {}
    for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        if i in special or i >= weight.shape[0]:
            continue
        if marked > pieces:  # SentencePiece / byte-level BPE: a word starts with its marker
            word = token[1:] if token.startswith(_WORD_MARKERS) else None
            if word is None and len(token) == 1 and _CJK.match(token):
                word = token  # CJK characters usually come without a word marker
        else:  # WordPiece: "##" marks a continuation
            word = None if token.startswith("##") else token
        if not word or not word.isalpha():
            continue
        if len(word) == 1 and _CJK.match(word):
            cjk.setdefault(word, i)
        elif len(word) >= 2 and not _CJK.search(word):
            latin.setdefault(word, i)

    def build(entries: dict[str, int]) -> _Vocabulary:
        words = list(entries)
        ids = torch.tensor([entries[w] for w in words], dtype=torch.long)
        unit = F.normalize(weight[ids.to(weight.device)].float(), dim=-1)
        lower: dict[str, list[int]] = {}
        for k, w in enumerate(words):
            lower.setdefault(w.lower(), []).append(k)
        return _Vocabulary(words, ids, unit, lower)

    return build(latin), build(cjk)


def _split(text: str, cjk: bool) -> tuple[list[str], list[int]]:
    """Pieces that join back to `text`, and the indices of the attackable word pieces."""
    if cjk:
        pieces = list(text)
        return pieces, [i for i, c in enumerate(pieces) if _CJK.match(c)]
    pieces = re.split(r"(\S+)", text)
    words = [i for i in range(1, len(pieces), 2) if _core(pieces[i])[1].isalpha()]
    return pieces, words


def _core(piece: str) -> tuple[str, str, str]:
    """(leading punctuation, alphabetic core, trailing punctuation) of a whitespace token."""
    m = _CORE.match(piece)
    return m.group(1), m.group(2), m.group(3)


def _cased_like(word: str, original: str) -> str:
    if len(original) > 1 and original.isupper():
        return word.upper()
    if original[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class _Attack:
    def __init__(self, model, tokenizer, labels, max_length, candidates, batch_size, rank):
        self.model, self.tokenizer, self.labels = model, tokenizer, labels
        self.max_length, self.candidates, self.batch_size = max_length, candidates, batch_size
        # gradient ranking reads word spans from token offsets: fast tokenizers only
        self.rank = rank if getattr(tokenizer, "is_fast", False) else "deletion"
        self.device = _device(model)
        self.weight = model.get_input_embeddings().weight.detach()
        self.latin, self.cjk = _vocabularies(tokenizer, self.weight)
        self.special = set(tokenizer.all_special_ids)

    @torch.no_grad()
    def probs(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = self.model(
                input_ids=enc["input_ids"].to(self.device),
                attention_mask=enc["attention_mask"].to(self.device),
            ).logits
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def visible_chars(self, text: str) -> int:
        """How many leading characters of `text` survive truncation to max_length tokens."""
        if not getattr(self.tokenizer, "is_fast", False):
            return len(text)  # no offsets: treat every word as visible
        enc = self.tokenizer(
            text, truncation=True, max_length=self.max_length, return_offsets_mapping=True
        )
        return max((end for _, end in enc["offset_mapping"]), default=len(text))

    def saliency(self, text: str, spans: list[tuple[int, int]], gold: int) -> np.ndarray:
        """Gradient x input of log p(gold) summed over the tokens inside each char span."""
        enc = self.tokenizer(
            text,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc["offset_mapping"][0].tolist()
        ids = enc["input_ids"].to(self.device)
        with torch.enable_grad():
            x = self.model.get_input_embeddings()(ids).detach().requires_grad_(True)
            logits = self.model(
                inputs_embeds=x, attention_mask=enc["attention_mask"].to(self.device)
            ).logits
            (grad,) = torch.autograd.grad(torch.log_softmax(logits.float(), -1)[0, gold], x)
        per_token = (grad[0] * x[0].detach()).sum(-1).cpu().numpy()
        score = np.zeros(len(spans))
        for t, (a, b) in enumerate(offsets):
            if b <= a:
                continue  # special tokens and padding have empty offsets
            for k, (lo, hi) in enumerate(spans):
                if a < hi and b > lo:
                    score[k] += per_token[t]
                    break
        return np.abs(score)

    def neighbours(self, word: str, vocab: _Vocabulary) -> list[str]:
        """The `candidates` eligible entries nearest to `word` by cosine of input embeddings."""
        ids = [
            i
            for i in self.tokenizer(word, add_special_tokens=False)["input_ids"]
            if i not in self.special
        ]
        if not ids or not vocab.words:
            return []
        query = F.normalize(self.weight[ids].float().mean(0), dim=0)
        sims = vocab.unit @ query
        for k in vocab.lower.get(word.lower(), []):
            sims[k] = -float("inf")
        top = torch.topk(sims, min(self.candidates, len(vocab.words))).indices.tolist()
        return [vocab.words[k] for k in top if sims[k] > -float("inf")]

    def attack(self, text: str, gold: int, p_gold: float, max_words: int) -> tuple[str, int, int]:
        """(adversarial text, words replaced, predicted class id)."""
        cjk = is_cjk_text(text)
        vocab = self.cjk if cjk else self.latin
        pieces, words = _split(text, cjk)
        seen = self.visible_chars(text)  # words past truncation cannot change the prediction
        starts = np.cumsum([0] + [len(p) for p in pieces])
        words = [i for i in words if starts[i] < seen]
        pred = gold
        if not words:
            return text, 0, pred
        if self.rank == "gradient":
            drop = self.saliency(text, [(starts[i], starts[i + 1]) for i in words], gold)
        else:
            deleted = ["".join(pieces[:i] + pieces[i + 1 :]) for i in words]
            drop = p_gold - self.probs(deleted)[:, gold]
        ranked = [words[k] for k in sorted(range(len(words)), key=lambda k: (-drop[k], k))]
        current, changed = list(pieces), 0
        for i in ranked:
            if changed >= max_words:
                break
            lead, core, trail = ("", pieces[i], "") if cjk else _core(pieces[i])
            subs = self.neighbours(core, vocab)
            if not subs:
                continue
            options = [lead + _cased_like(s, core) + trail for s in subs]
            texts = ["".join(current[:i] + [o] + current[i + 1 :]) for o in options]
            probs = self.probs(texts)
            best = int(np.argmin(probs[:, gold]))  # first of equals: deterministic
            if probs[best, gold] >= p_gold:
                continue  # no substitute of this word helps; keep it
            current[i], p_gold, changed = options[best], float(probs[best, gold]), changed + 1
            pred = int(probs[best].argmax())
            if pred != gold:
                break
        return "".join(current), changed, pred


def substitution_attack(
    model,
    tokenizer,
    records: list[dict],
    labels: list[str],
    max_length: int,
    max_words: int = 3,
    candidates: int = 8,
    n: int | None = 100,
    batch_size: int = 64,
    details: bool = False,
    rank: str = "gradient",
) -> dict:
    """Greedy word-substitution attack on the first `n` correctly classified records.

    The evaluated set is the shortest prefix of `records` holding those `n` (all records
    when `n` is None or there are fewer): records the model already gets wrong are left
    untouched and stay wrong, so "accuracy"/"macro_f1" under attack are over the same set as
    "clean_accuracy"/"clean_macro_f1" ("n_evaluated" records), and accuracy under attack is
    clean accuracy times (1 - success_rate). "success_rate" is the share of the `n`
    attacked records whose prediction flipped; "avg_words_changed" averages the number of
    replaced words over all attacked records (flipped or not). "examples" holds up to 5
    attacks, successful ones first; with `details`, "records" holds every attacked record
    with its "words_changed" and "success". Deterministic: no sampling anywhere."""
    label2id = {lab: i for i, lab in enumerate(labels)}
    limit = len(records) if n is None else n
    gold_all, clean_all, pred_all, attacked = [], [], [], []
    with _EvalMode(model):
        attack = _Attack(model, tokenizer, labels, max_length, candidates, batch_size, rank)
        for start in range(0, len(records), batch_size):
            if len(attacked) >= limit:
                break
            chunk = records[start : start + batch_size]
            probs = attack.probs([r["text"] for r in chunk])
            for r, p in zip(chunk, probs, strict=True):
                if len(attacked) >= limit:
                    break
                gold = label2id[r["label"]]
                gold_all.append(r["label"])
                clean_all.append(labels[int(p.argmax())])
                if int(p.argmax()) != gold:
                    pred_all.append(clean_all[-1])
                    continue
                adv, changed, pred = attack.attack(r["text"], gold, float(p[gold]), max_words)
                pred_all.append(labels[pred])
                attacked.append(
                    {
                        "text": r["text"],
                        "attacked": adv,
                        "gold": r["label"],
                        "pred": labels[pred],
                        "words_changed": changed,
                        "success": pred != gold,
                    }
                )
    n_att = len(attacked)
    success = sum(a["success"] for a in attacked)
    empty = {"accuracy": 0.0, "macro_f1": 0.0}
    under = _scores(gold_all, pred_all, labels) if gold_all else empty
    before = _scores(gold_all, clean_all, labels) if gold_all else empty
    examples = sorted(attacked, key=lambda a: not a["success"])[:5]
    out = {
        "max_words": max_words,
        "candidates": candidates,
        "rank": attack.rank,
        "n": n_att,
        "n_evaluated": len(gold_all),
        "success_rate": success / n_att if n_att else 0.0,
        **under,
        "clean_accuracy": before["accuracy"],
        "clean_macro_f1": before["macro_f1"],
        "avg_words_changed": sum(a["words_changed"] for a in attacked) / n_att if n_att else 0.0,
        "examples": [{k: a[k] for k in ("text", "attacked", "gold", "pred")} for a in examples],
    }
    if details:
        out["records"] = attacked
    return out
