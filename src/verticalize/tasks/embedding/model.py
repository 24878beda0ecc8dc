"""Retrieval embeddings: a head-less encoder, mean-pooled and L2-normalised (the service's
`mean_pool`), trained with the multiple-negatives ranking loss of sentence-transformers.

For each query of a batch, its own positive is the right answer among the batch's positives
and hard negatives: the loss is cross-entropy over scale × cosine similarity
(`MultipleNegativesRankingLoss(scale=20, similarity_fct=cos_sim)`, Henderson et al. 2017).
A batch where only some pairs carry a hard negative adds just those negatives to the
candidates (sentence-transformers needs all or none; both agree when all or none have one).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from verticalize.models.text_batches import pad_inputs
from verticalize.serve.engines import mean_pool
from verticalize.tasks.embedding.pairs import Pair, passage_key, passages_of
from verticalize.tasks.embedding.settings import EmbeddingConfig

ROLES = ("query", "positive", "negative")


def mnrl_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    scale: float = 20.0,
) -> torch.Tensor:
    """Mean cross-entropy of scale · cos(query_i, candidate_j) with candidate i the right
    one; candidates are all positives, then all hard negatives."""
    candidates = positives if negatives is None else torch.cat([positives, negatives])
    scores = F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T * scale
    return F.cross_entropy(scores, torch.arange(len(queries), device=scores.device))


def embed(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled, L2-normalised last hidden states: [batch, hidden]."""
    out = model(input_ids=ids, attention_mask=mask)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return mean_pool(hidden, mask)


@torch.inference_mode()
def embed_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int):
    """One embedding per text (np.float32 [n, hidden]), in batches of similar length."""
    model.eval()
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id or 0
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x, mask = pad_inputs([_item(ids[i]) for i in idx], pad)
        vectors = embed(model, x.to(device), mask.to(device)).cpu().numpy()
        if out is None:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[idx] = vectors
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _item(ids: list[int]) -> dict:
    return {"input_ids": ids, "attention_mask": [1] * len(ids)}


class PairItems(Dataset):
    """Tokenized pairs. An item's `input_ids` are its query's, positive's and negative's
    tokens one after another (what one example costs, for the loop's and the planner's
    token counts); `parts` says how many belong to each."""

    def __init__(self, pairs: list[Pair], tokenizer, max_length: int, s: EmbeddingConfig):
        def tokens(texts: list[str]) -> list[list[int]]:
            return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

        queries = tokens([s.query_prefix + p.query for p in pairs])
        positives = tokens([s.passage_prefix + p.positive for p in pairs])
        with_negative = [i for i, p in enumerate(pairs) if p.negative is not None]
        negatives = dict(
            zip(
                with_negative,
                tokens([s.passage_prefix + pairs[i].negative for i in with_negative]),
                strict=True,
            )
        )
        self.items = []
        for i in range(len(pairs)):
            parts = [queries[i], positives[i], negatives.get(i, [])]
            self.items.append({"input_ids": sum(parts, []), "parts": [len(x) for x in parts]})
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def truncated(self) -> int:
        """Items with a text cut at max_length."""
        return sum(any(n >= self.max_length for n in x["parts"]) for x in self.items)


def split_parts(item: dict) -> list[list[int]]:
    """An item's query, positive and negative token ids ([] for no negative)."""
    out, start = [], 0
    for n in item["parts"]:
        out.append(item["input_ids"][start : start + n])
        start += n
    return out


def make_collate(pad_token_id: int):
    """Items → padded query, positive and negative tensors (negatives only of the items
    that have one: [0, 1] tensors when none does)."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        split = [split_parts(x) for x in items]
        batch = {}
        for n, role in enumerate(ROLES):
            rows = [_item(parts[n]) for parts in split if parts[n]]
            if rows:
                batch[f"{role}_ids"], batch[f"{role}_mask"] = pad_inputs(rows, pad_token_id)
            else:
                batch[f"{role}_ids"] = torch.zeros((0, 1), dtype=torch.long)
                batch[f"{role}_mask"] = torch.zeros((0, 1), dtype=torch.long)
        return batch

    return collate


def batch_loss(model, batch: dict, scale: float) -> tuple[torch.Tensor, int]:
    """(MNRL of the batch, number of queries)."""
    q = embed(model, batch["query_ids"], batch["query_mask"])
    p = embed(model, batch["positive_ids"], batch["positive_mask"])
    n = None
    if len(batch["negative_ids"]):
        n = embed(model, batch["negative_ids"], batch["negative_mask"])
    return mnrl_loss(q, p, n, scale), len(q)


def embedding_recipe(
    train_set: PairItems,
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    tokenizer,
    s: EmbeddingConfig,
    max_length: int,
    batch_size: int,
    eval_batch_size: int,
):
    """The training loop's view of the task: MNRL on the training pairs; validation ranks
    each validation query against the passages of the validation and training pairs
    (positives and hard negatives; not the test split's, nor the extra corpus: fast enough
    to run at every evaluation) and reports the ranking metrics, plus MNRL over batches of
    validation pairs as "loss"."""
    from verticalize.tasks.embedding.metrics import mean_metrics, per_query
    from verticalize.train.loop import Recipe

    corpus = passages_of(train_pairs, passages_of(val_pairs))
    positive = [corpus.index[passage_key(p.positive)] for p in val_pairs]
    negative = [corpus.index[passage_key(p.negative)] if p.negative else -1 for p in val_pairs]
    queries = [s.query_prefix + p.query for p in val_pairs]
    passages = [s.passage_prefix + t for t in corpus.texts]

    def evaluate(model) -> dict:
        q = embed_texts(model, tokenizer, queries, max_length, eval_batch_size)
        c = embed_texts(model, tokenizer, passages, max_length, eval_batch_size)
        m = mean_metrics(per_query(q @ c.T, [[i] for i in positive]))
        m["loss"] = pairs_loss(
            torch.from_numpy(q), torch.from_numpy(c), positive, negative, s.scale, batch_size
        )
        return m

    return Recipe(
        items=train_set,
        collate=make_collate(tokenizer.pad_token_id or 0),
        loss=lambda model, batch: batch_loss(model, batch, s.scale),
        weight=lambda item: 1,
        evaluate=evaluate,
    )


def pairs_loss(
    q: torch.Tensor,
    passages: torch.Tensor,
    positive: list[int],
    negative: list[int],
    scale: float,
    batch_size: int,
) -> float:
    """MNRL of embedded pairs in consecutive batches of `batch_size`, averaged over pairs
    (`negative[i]` is -1 for a pair without a hard negative)."""
    total = 0.0
    for start in range(0, len(q), batch_size):
        rows = range(start, min(start + batch_size, len(q)))
        negs = [negative[i] for i in rows if negative[i] >= 0]
        loss = mnrl_loss(
            q[list(rows)],
            passages[[positive[i] for i in rows]],
            passages[negs] if negs else None,
            scale,
        )
        total += float(loss) * len(rows)
    return total / max(len(q), 1)
