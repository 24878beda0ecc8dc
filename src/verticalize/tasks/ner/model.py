"""Named-entity recognition (M2): words → first sub-tokens → a tagging head → character spans.

Each record's text is cut into words (`ner_tags.word_spans`); the tokenizer sees the words
(`is_split_into_words`), the backbone's hidden state at each word's first sub-token is what
the head tags (the other sub-tokens carry no label), and predicted word tags become
character spans again through the words' offsets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from verticalize.config import NerConfig
from verticalize.data.tags import (
    CJK_CHAR,
    spans_to_word_tags,
    tag_names,
    word_spans,
    word_tags_to_spans,
)

HEAD_FILE, SPEC_FILE = "ner_head.safetensors", "ner.json"


class TokenTagger(nn.Module):
    """A transformers backbone (AutoModel, maybe PEFT-wrapped) plus a `NerHead` over words."""

    def __init__(self, backbone: nn.Module, head: nn.Module, head_lr: float | None = None):
        super().__init__()
        self.backbone, self.head, self.head_lr = backbone, head, head_lr

    def forward(self, input_ids, attention_mask, first, labels=None, word_mask=None):
        """Hidden states of each word's first sub-token: [batch, words, hidden]; with labels,
        the head's (summed loss, labelled words) instead, inside forward so DDP sees it."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        index = first.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        words = torch.gather(hidden, 1, index)
        return words if labels is None else self.head.loss(words, labels, word_mask)

    def lr_of(self, name: str) -> float | None:
        """The head's own learning rate (the training loop asks)."""
        return self.head_lr if name.startswith("head.") else None

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        self.backbone.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=gradient_checkpointing_kwargs
        )


def build_head(hidden_size: int, tags: list[str], cfg: NerConfig) -> nn.Module:
    from verticalize.tasks.ner.heads import NerHead

    return NerHead(
        hidden_size,
        tags,
        cfg.scheme,
        cfg.head,
        fuse_with=cfg.fuse_with,
        fusion=cfg.fusion,
        lstm_hidden=cfg.lstm_hidden,
        dropout=cfg.dropout,
    )


def new_tagger(base: str, types: list[str], cfg: NerConfig):
    """(TokenTagger with a fresh head for `types`, tokenizer, tags) on the base model."""
    from transformers import AutoModel

    from verticalize.models.load import _from_pretrained, load_tokenizer

    tokenizer = load_tokenizer(base)
    backbone = _from_pretrained(AutoModel, base, dtype=torch.float32)
    if getattr(backbone, "pooler", None) is not None:  # tagging reads token states only: the
        backbone.pooler.requires_grad_(False)  # pooler gets no gradient (DDP would wait on it)
    tags = tag_names(types, cfg.scheme)
    head = build_head(backbone.config.hidden_size, tags, cfg)
    return TokenTagger(backbone, head, cfg.head_lr), tokenizer, tags


def save_tagger(
    model: TokenTagger, backbone: nn.Module, tokenizer, tags, cfg, max_length: int, out: Path
) -> None:
    """Backbone + tokenizer as a Hugging Face folder; the head beside them."""
    from safetensors.torch import save_file

    backbone.save_pretrained(out)
    tokenizer.save_pretrained(out)
    state = {k: v.detach().contiguous() for k, v in model.head.state_dict().items()}
    save_file(state, str(out / HEAD_FILE))
    spec = {"tags": tags, "ner": cfg.model_dump(mode="json"), "max_length": max_length}
    (out / SPEC_FILE).write_text(json.dumps(spec, ensure_ascii=False, indent=1), "utf-8")


def load_tagger(folder: str | Path):
    """(TokenTagger, tokenizer, spec) from a folder written by `save_tagger`; spec holds
    tags, max_length and the NerConfig under "config"."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from verticalize.errors import ModelError

    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file():
        raise ModelError(
            f"{folder}: no {SPEC_FILE}, so this is not a NER model. Fix: point at the model/ "
            "folder of a run with task: ner."
        )
    spec = json.loads((folder / SPEC_FILE).read_text("utf-8"))
    cfg = NerConfig(**spec["ner"])
    backbone = AutoModel.from_pretrained(folder, dtype=torch.float32)
    head = build_head(backbone.config.hidden_size, spec["tags"], cfg)
    head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    model = TokenTagger(backbone, head).eval()
    return model, AutoTokenizer.from_pretrained(folder), {**spec, "config": cfg}


class Tagger:
    """A trained NER model that tags raw texts: `Tagger(folder)(["text", …])` gives, per
    text, entities {start, end, type, text, score} with character offsets into that text."""

    def __init__(self, folder: str | Path, batch_size: int = 32):
        self.model, self.tokenizer, spec = load_tagger(folder)
        self.tags, self.cfg, self.max_length = spec["tags"], spec["config"], spec["max_length"]
        self.batch_size = batch_size

    def __call__(self, texts: list[str]) -> list[list[dict]]:
        enc = encode(
            [{"text": t} for t in texts],
            self.tokenizer,
            self.tags,
            self.cfg.scheme,
            self.max_length,
        )
        pred = predict(
            self.model,
            enc,
            self.tags,
            self.cfg.scheme,
            self.tokenizer.pad_token_id,
            self.batch_size,
        )
        return [
            [{"start": s, "end": e, "type": k, "text": t[s:e], "score": p} for s, e, k, p in spans]
            for t, spans in zip(texts, pred.spans, strict=True)
        ]


# ---------------------------------------------------------------- encoding


@dataclass
class Encoded:
    items: list[dict]
    misaligned_spans: int = 0  # spans not on word boundaries (tagged over the words they touch)
    truncated: int = 0  # records with words cut off by max_length
    words: list[list[tuple[int, int]]] = field(default_factory=list)


def encode(records: list[dict], tokenizer, tags: list[str], scheme: str, max_length: int):
    """Tokenized words, first sub-token positions and word tag ids of every record."""
    tag2id = {t: i for i, t in enumerate(tags)}
    out = Encoded([])
    lone = _lone_metaspace_id(tokenizer)
    for rec in records:
        text, words = rec["text"], word_spans(rec["text"])
        gold, bad = spans_to_word_tags(words, rec.get("spans") or [], scheme)
        out.misaligned_spans += bad
        pieces = [text[s:e] for s, e in words]
        if lone is None:
            enc = tokenizer(
                pieces, is_split_into_words=True, truncation=True, max_length=max_length
            )
            input_ids, word_ids = enc["input_ids"], enc.word_ids()
        else:
            enc = tokenizer(pieces, is_split_into_words=True)
            input_ids, word_ids = _cjk_as_bare_pieces(tokenizer, enc, pieces, max_length)
        first, kept, seen = [], [], set()
        for pos, w in enumerate(word_ids):
            if w is not None and w not in seen:
                seen.add(w)
                first.append(pos)
                kept.append(w)
        if len(kept) < len(words):  # words cut off by max_length, or without a token
            out.truncated += bool(kept) and kept[-1] < len(words) - 1
            seen_tags = _visible_tags(words, kept, rec.get("spans") or [], scheme)
        else:
            seen_tags = gold
        out.items.append(
            {
                "input_ids": input_ids,
                "attention_mask": [1] * len(input_ids),
                "first": first,
                "kept": kept,  # which words the model sees (a word may yield no token)
                "tags": [tag2id.get(t, 0) for t in seen_tags],
            }
        )
        out.words.append(words)
    return out


def _lone_metaspace_id(tokenizer) -> int | None:
    """The id of a lone "▁" piece (SentencePiece tokenizers: XLM-R, so multilingual-e5),
    or None."""
    lone = tokenizer.convert_tokens_to_ids("▁")
    return None if lone is None or lone == tokenizer.unk_token_id else lone


def _cjk_as_bare_pieces(tokenizer, enc, pieces: list[str], max_length: int):
    """(input ids, word ids) with each CJK character as its own piece without "▁", then cut
    to max_length keeping the closing special tokens, as the tokenizer's truncation does.

    Given words, SentencePiece puts "▁" before each: a character becomes "▁X" or "▁" + "X"
    (twice the tokens, and the "▁" is the one tagged). Inside running Chinese text the
    characters are mostly pieces without "▁", so that is what the model reads here."""
    unk = tokenizer.unk_token_id
    bare = {}
    for w, piece in enumerate(pieces):
        if CJK_CHAR.fullmatch(piece):
            token = tokenizer.convert_tokens_to_ids(piece)
            if token is not None and token != unk:
                bare[w] = token
    ids, word_ids, previous = [], [], None
    for token, w in zip(enc["input_ids"], enc.word_ids(), strict=True):
        if w not in bare:
            ids.append(token)
            word_ids.append(w)
        elif w != previous:
            ids.append(bare[w])
            word_ids.append(w)
        previous = w
    if len(ids) > max_length:
        tail = len(word_ids) - max(i for i, w in enumerate(word_ids) if w is not None) - 1
        cut = max_length - tail
        ids = ids[:cut] + ids[len(ids) - tail :]
        word_ids = word_ids[:cut] + word_ids[len(word_ids) - tail :]
    return ids, word_ids


def _visible_tags(words, kept: list[int], spans: list, scheme: str) -> list[str]:
    """Tags of the words the model sees, from the spans over just those words: a span cut by
    max_length still gives a valid sequence (BIOES closes it with E or S)."""
    return spans_to_word_tags([words[w] for w in kept], spans, scheme)[0]


def make_ner_collate(pad_token_id: int):
    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(x["input_ids"]) for x in items)
        n_words = max(max(len(x["first"]) for x in items), 1)
        ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        first = torch.zeros((len(items), n_words), dtype=torch.long)
        word_mask = torch.zeros((len(items), n_words), dtype=torch.bool)
        labels = torch.full((len(items), n_words), -100, dtype=torch.long)
        for i, x in enumerate(items):
            ids[i, : len(x["input_ids"])] = torch.tensor(x["input_ids"])
            mask[i, : len(x["attention_mask"])] = torch.tensor(x["attention_mask"])
            k = len(x["first"])
            first[i, :k] = torch.tensor(x["first"], dtype=torch.long)
            word_mask[i, :k] = True
            labels[i, :k] = torch.tensor(x["tags"], dtype=torch.long)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "first": first,
            "word_mask": word_mask,
            "labels": labels,
        }

    return collate


def ner_loss(model: TokenTagger, batch: dict) -> tuple[torch.Tensor, int]:
    """Mean loss per labelled word, and the number of words."""
    keys = ("input_ids", "attention_mask", "first", "labels", "word_mask")
    total, n = model(*(batch[k] for k in keys))
    return total / max(n, 1), n


@dataclass
class Predictions:
    spans: list[list]  # per record: [[start, end, TYPE, score], …]
    tags: list[list[str]]  # per record: one tag per word of the text ("O" where unseen)
    loss: float


@torch.no_grad()
def predict(model: TokenTagger, enc: Encoded, tags: list[str], scheme: str, pad_id: int, bs: int):
    """Spans with character offsets and scores, word tags, and the mean loss per word."""
    model.eval()
    collate = make_ner_collate(pad_id)
    order = sorted(range(len(enc.items)), key=lambda i: len(enc.items[i]["input_ids"]))
    device = next(model.parameters()).device
    word_tags: list[list[str]] = [["O"] * len(w) for w in enc.words]
    word_scores: list[list[float]] = [[1.0] * len(w) for w in enc.words]
    total, n_words = 0.0, 0
    for start in range(0, len(order), bs):
        idx = order[start : start + bs]
        batch = {k: v.to(device) for k, v in collate([enc.items[i] for i in idx]).items()}
        hidden = model(batch["input_ids"], batch["attention_mask"], batch["first"])
        loss, n = model.head.loss(hidden, batch["labels"], batch["word_mask"])
        total, n_words = total + float(loss), n_words + n
        ids, scores = model.head.decode(hidden, batch["word_mask"])
        for i, seq, sc in zip(idx, ids, scores, strict=True):
            for w, t, p in zip(enc.items[i]["kept"], seq, sc, strict=False):
                word_tags[i][w], word_scores[i][w] = tags[t], float(p)
    spans = []
    for words, wt, ws in zip(enc.words, word_tags, word_scores, strict=True):
        found = word_tags_to_spans(words, wt, scheme)
        spans.append([[s, e, k, _span_score(words, ws, s, e)] for s, e, k in found])
    return Predictions(spans, word_tags, total / max(n_words, 1))


def _span_score(words, scores, start: int, end: int) -> float:
    inside = [p for (s, e), p in zip(words, scores, strict=True) if s >= start and e <= end]
    return round(sum(inside) / max(len(inside), 1), 4)


def entity_tuples(spans: list) -> list[tuple]:
    """(TYPE, start, end) of spans [[start, end, TYPE, …], …] for scoring."""
    return [(s[2], s[0], s[1]) for s in spans]


def ner_recipe(train: Encoded, val: Encoded, val_records, tags, scheme, pad_id, eval_bs):
    """The training loop's view of the task: loss per word; entity F1 on validation."""
    from verticalize.tasks.ner.metrics import entity_scores
    from verticalize.train.loop import Recipe

    def evaluate(model) -> dict:
        pred = predict(model, val, tags, scheme, pad_id, eval_bs)
        gold = [entity_tuples(r.get("spans") or []) for r in val_records]
        m = entity_scores(gold, [entity_tuples(p) for p in pred.spans])
        return {**m, "loss": pred.loss}

    return Recipe(
        items=train.items,
        collate=make_ner_collate(pad_id),
        loss=ner_loss,
        weight=lambda item: len(item["first"]),
        evaluate=evaluate,
    )
