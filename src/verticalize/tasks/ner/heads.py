"""NER heads (M4) on word hidden states: linear or BiLSTM emissions, an optional CRF on
top, and optional fusion of a second emission branch by weighted sum or attention gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from verticalize.tasks.ner.crf import CRF

HEADS = ("linear", "bilstm", "crf", "bilstm_crf")
BRANCHES = ("linear", "bilstm")
FUSIONS = ("weighted", "gate")


class Emitter(nn.Module):
    """Tag scores per word: a linear layer, over a BiLSTM when `lstm`."""

    def __init__(self, hidden_size: int, n_tags: int, lstm: bool, lstm_hidden: int):
        super().__init__()
        self.lstm = None
        if lstm:
            self.lstm = nn.LSTM(hidden_size, lstm_hidden, batch_first=True, bidirectional=True)
            hidden_size = 2 * lstm_hidden
        self.out = nn.Linear(hidden_size, n_tags)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.lstm is not None:
            lengths = mask.sum(1).clamp(min=1).cpu()  # packing refuses empty sequences
            packed = pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
            hidden, _ = pad_packed_sequence(
                self.lstm(packed)[0], batch_first=True, total_length=hidden.shape[1]
            )
        return self.out(hidden)


class NerHead(nn.Module):
    """Word tagger: `head` emissions (fused with a `fuse_with` branch), CRF if `head` ends
    in crf. `tags` and `scheme` come from ner_tags.tag_names."""

    def __init__(
        self,
        hidden_size: int,
        tags: list[str],
        scheme: str,
        head: str,
        fuse_with: str | None = None,
        fusion: str = "weighted",
        lstm_hidden: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        if head not in HEADS or fuse_with not in (None, *BRANCHES) or fusion not in FUSIONS:
            raise ValueError(
                f"NER head {head!r} / fuse_with {fuse_with!r} / fusion {fusion!r}: "
                f"use head in {HEADS}, fuse_with in {BRANCHES} or None, fusion in {FUSIONS}"
            )
        self.head, self.fuse_with, self.fusion = head, fuse_with, fusion
        self.tags = list(tags)
        self.dropout = nn.Dropout(dropout)
        n = len(tags)
        self.branch = Emitter(hidden_size, n, head.startswith("bilstm"), lstm_hidden)
        self.other = None
        if fuse_with:
            self.other = Emitter(hidden_size, n, fuse_with == "bilstm", lstm_hidden)
            if fusion == "weighted":
                self.mix = nn.Parameter(torch.zeros(2))
            else:
                self.gate = nn.Linear(hidden_size, 1)
        self.crf = CRF(tags, scheme) if head.endswith("crf") else None

    def describe(self) -> str:
        """e.g. "bilstm_crf + linear (gate)"."""
        return self.head + (f" + {self.fuse_with} ({self.fusion})" if self.fuse_with else "")

    def emissions(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """Tag scores [B, W, T] for word hidden states [B, W, H]."""
        hidden = self.dropout(hidden.to(self.branch.out.weight.dtype))
        mask = mask.bool()
        scores = self.branch(hidden, mask)
        if self.other is None:
            return scores
        if self.fusion == "weighted":
            w = self.mix.softmax(0)
            return w[0] * scores + w[1] * self.other(hidden, mask)
        g = torch.sigmoid(self.gate(hidden))
        return g * scores + (1 - g) * self.other(hidden, mask)

    def loss(self, hidden: Tensor, tags: Tensor, mask: Tensor) -> tuple[Tensor, int]:
        """Summed loss over the batch (CRF NLL, else cross-entropy) and the words it covers."""
        mask = mask.bool()
        scores = self.emissions(hidden, mask).float()
        if self.crf is not None:
            return self.crf.nll(scores, tags, mask).sum(), int(mask.sum())
        target = torch.where(mask, tags, -100)
        ce = F.cross_entropy(scores.flatten(0, 1), target.flatten(), reduction="sum")
        return ce, int((target != -100).sum())

    @torch.no_grad()
    def decode(self, hidden: Tensor, mask: Tensor) -> tuple[list[list[int]], list[list[float]]]:
        """Tag ids per word and the probability of each chosen tag (CRF marginals with a
        CRF; else softmax argmax, which may break the scheme)."""
        mask = mask.bool()
        scores = self.emissions(hidden, mask).float()
        lengths = mask.sum(1).tolist()
        if self.crf is not None:
            ids = self.crf.decode(scores, mask)
            probs = self.crf.marginals(scores, mask)
        else:
            probs = scores.softmax(-1)
            ids = [row[:n] for row, n in zip(probs.argmax(-1).tolist(), lengths, strict=True)]
        probs = probs.cpu()
        conf = [
            probs[b, torch.arange(len(row)), torch.tensor(row, dtype=torch.long)].tolist()
            for b, row in enumerate(ids)
        ]
        return ids, conf
