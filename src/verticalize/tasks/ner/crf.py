"""Linear-chain CRF (M4) over word emissions, with the moves of the tag scheme enforced.

Forbidden moves (I-X after O, B-X then O in BIOES, …) are masked with a score no emission
can outweigh, so Viterbi only returns sequences that read as strict entities. All sums run
in float32, vectorized over the batch; only positions are looped over.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BLOCKED = -1e30  # forbidden moves in the partition, Viterbi and marginals: never chosen
GOLD_PENALTY = -1e4  # per forbidden move on a gold path: a bad label costs much, not inf


def _split(tag: str) -> tuple[str, str]:
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def allowed(tags: list[str], scheme: str) -> tuple[Tensor, Tensor, Tensor]:
    """Which tags may start a sequence, follow each tag (trans[i, j]: j after i), end one."""
    if scheme not in ("bio", "bioes"):
        raise ValueError(f"unknown tag scheme {scheme!r}: use bio or bioes")
    parts = [_split(t) for t in tags]
    n = len(tags)
    start = torch.tensor([p in ("O", "B", "S") for p, _ in parts])
    end = torch.tensor([scheme == "bio" or p in ("O", "E", "S") for p, _ in parts])
    trans = torch.ones(n, n, dtype=torch.bool)
    for i, (pi, ki) in enumerate(parts):
        for j, (pj, kj) in enumerate(parts):
            if scheme == "bio":
                ok = pj != "I" or (pi in ("B", "I") and ki == kj)
            elif pi in ("B", "I"):
                ok = pj in ("I", "E") and ki == kj
            else:
                ok = pj in ("O", "B", "S")
            trans[i, j] = ok
    return start, trans, end


class CRF(nn.Module):
    """Learned start / transition / end scores over `tags`, constrained by `scheme`."""

    def __init__(self, tags: list[str], scheme: str):
        super().__init__()
        start, trans, end = allowed(tags, scheme)
        self.tags = list(tags)
        self.scheme = scheme
        n = len(tags)
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.register_buffer("start_ok", start, persistent=False)
        self.register_buffer("trans_ok", trans, persistent=False)
        self.register_buffer("end_ok", end, persistent=False)

    def _scores(self, penalty: float) -> tuple[Tensor, Tensor, Tensor]:
        """start, transitions, end in float32 with forbidden entries set to `penalty`."""
        return (
            self.start.float().masked_fill(~self.start_ok, penalty),
            self.transitions.float().masked_fill(~self.trans_ok, penalty),
            self.end.float().masked_fill(~self.end_ok, penalty),
        )

    @staticmethod
    def _prepare(emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """float32 emissions with padding zeroed, and the mask as bool."""
        mask = mask.bool()
        return emissions.float().masked_fill(~mask[..., None], 0.0), mask

    def _forward(self, em: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """log Z per sequence, and the forward scores at every position."""
        start, trans, end = self._scores(BLOCKED)
        alpha = start + em[:, 0]
        alphas = [alpha]
        for t in range(1, em.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + trans, dim=1) + em[:, t]
            alpha = torch.where(mask[:, t, None], step, alpha)
            alphas.append(alpha)
        return torch.logsumexp(alpha + end, dim=1), alphas

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood of `tags` per sequence [B]; 0 for empty sequences."""
        em, mask = self._prepare(emissions, mask)
        if em.shape[1] == 0:
            return em.new_zeros(em.shape[0])
        tags = torch.where(mask, tags.long(), 0)
        log_z, _ = self._forward(em, mask)
        start, trans, end = self._scores(GOLD_PENALTY)
        gold_em = em.gather(2, tags[..., None]).squeeze(2)
        moves = trans[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        gold = start[tags[:, 0]] + gold_em.sum(1) + moves.sum(1) + end[last]
        return torch.where(mask[:, 0], log_z - gold, 0.0)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """Best allowed tag path per sequence (Viterbi); [] for empty sequences."""
        em, mask = self._prepare(emissions, mask)
        lengths = mask.sum(1).tolist()
        if em.shape[1] == 0:
            return [[] for _ in lengths]
        start, trans, end = self._scores(BLOCKED)
        n = em.shape[2]
        stay = torch.arange(n, device=em.device).expand_as(em[:, 0])
        score = start + em[:, 0]
        back = []
        for t in range(1, em.shape[1]):
            best, idx = (score[:, :, None] + trans).max(dim=1)
            score = torch.where(mask[:, t, None], best + em[:, t], score)
            back.append(torch.where(mask[:, t, None], idx, stay))  # padding: keep the tag
        tag = (score + end).argmax(dim=1)
        path = [tag]
        for idx in reversed(back):
            tag = idx.gather(1, tag[:, None]).squeeze(1)
            path.append(tag)
        rows = torch.stack(path[::-1], dim=1).tolist()
        return [row[:length] for row, length in zip(rows, lengths, strict=True)]

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Posterior probability of each tag at each position [B, W, T]; 0 on padding."""
        em, mask = self._prepare(emissions, mask)
        if em.shape[1] == 0:
            return em
        _, alphas = self._forward(em, mask)
        _, trans, end = self._scores(BLOCKED)
        beta = end.expand_as(em[:, 0])
        betas = [beta]
        for t in range(em.shape[1] - 1, 0, -1):
            step = torch.logsumexp(trans + (em[:, t] + beta)[:, None, :], dim=2)
            beta = torch.where(mask[:, t, None], step, end)
            betas.append(beta)
        # normalized per position rather than by log Z: the same in exact arithmetic, and
        # sums stay 1 when huge scores make alpha + beta - log Z cancel badly in float32
        scores = torch.stack(alphas, 1) + torch.stack(betas[::-1], 1)
        return scores.softmax(-1) * mask[..., None]
