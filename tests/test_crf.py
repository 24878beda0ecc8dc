"""Constrained CRF and NER heads: brute force over all paths, validity under adversarial
scores, and tiny training runs of every head."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verticalize.data.tags import entities, tag_names
from verticalize.tasks.ner.crf import CRF, allowed
from verticalize.tasks.ner.heads import NerHead


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: threads only contend with each other (and with other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def valid(names: list[str], scheme: str) -> bool:
    """The scheme's rules, written out independently of crf.allowed."""
    inside = None  # the type of the open chunk
    for tag in names:
        prefix, _, kind = tag.partition("-")
        if scheme == "bio":
            if prefix == "I" and inside != kind:
                return False
            inside = kind if prefix in ("B", "I") else None
        elif inside is not None:
            if prefix not in ("I", "E") or kind != inside:
                return False
            inside = kind if prefix == "I" else None
        else:
            if prefix in ("I", "E"):
                return False
            inside = kind if prefix == "B" else None
    return scheme == "bio" or inside is None


def randomized(tags: list[str], scheme: str, gen: torch.Generator) -> CRF:
    crf = CRF(tags, scheme)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return crf


def path_score(crf: CRF, em: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    s = crf.start[path[0]] + crf.end[path[-1]] + sum(em[t, y] for t, y in enumerate(path))
    return s + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_brute_force_partition_viterbi_marginals(scheme):
    tags = tag_names(["PER", "LOC"], scheme)
    n = len(tags)
    gen = torch.Generator().manual_seed(0)
    crf = randomized(tags, scheme, gen)
    lengths = [3, 1, 0, 4]
    em = torch.randn(len(lengths), 4, n, generator=gen) * 2
    mask = torch.arange(4)[None] < torch.tensor(lengths)[:, None]
    gold = torch.full((len(lengths), 4), -100)
    s_ok, t_ok, e_ok = allowed(tags, scheme)
    nll = crf.nll(em, gold.clamp(min=0), mask)  # all-O gold
    decoded = crf.decode(em, mask)
    marg = crf.marginals(em, mask)
    assert nll[2] == 0 and decoded[2] == [] and marg[2].abs().sum() == 0
    for b, length in enumerate(lengths):
        if length == 0:
            continue
        paths = [
            p
            for p in itertools.product(range(n), repeat=length)
            if valid([tags[i] for i in p], scheme)
        ]
        # crf.allowed admits exactly the valid paths
        by_masks = [
            p
            for p in itertools.product(range(n), repeat=length)
            if s_ok[p[0]] and e_ok[p[-1]] and all(t_ok[a, c] for a, c in itertools.pairwise(p))
        ]
        assert by_masks == paths
        scores = torch.stack([path_score(crf, em[b], p) for p in paths])
        log_z = torch.logsumexp(scores, 0)
        torch.testing.assert_close(nll[b], log_z - path_score(crf, em[b], (0,) * length))
        assert tuple(decoded[b]) == paths[int(scores.argmax())]
        probs = torch.softmax(scores, 0)
        expected = torch.zeros(4, n)
        for p, w in zip(paths, probs, strict=True):
            expected[torch.arange(length), torch.tensor(p)] += w
        torch.testing.assert_close(marg[b], expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(marg[b, :length].sum(-1), torch.ones(length))


def test_gold_labels_and_padding():
    tags = tag_names(["X"], "bioes")
    crf = randomized(tags, "bioes", torch.Generator().manual_seed(1))
    em = torch.randn(2, 3, len(tags), dtype=torch.bfloat16)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    gold = torch.tensor([[1, 3, -100], [4, 0, 4]])  # B-X E-X pad ; S-X O S-X
    nll = crf.nll(em, gold, mask)
    assert nll.dtype == torch.float32 and (nll > 0).all()
    # anything after the mask is ignored, emissions included
    em2, gold2 = em.clone(), gold.clone()
    em2[0, 2] = 1e4
    gold2[0, 2] = 2
    torch.testing.assert_close(crf.nll(em2, gold2, mask), nll)
    # likelihoods of the valid paths sum to 1
    paths = [
        p for p in itertools.product(range(5), repeat=2) if valid([tags[i] for i in p], "bioes")
    ]
    lik = [torch.exp(-crf.nll(em[:1], torch.tensor([list(p) + [0]]), mask[:1]))[0] for p in paths]
    torch.testing.assert_close(torch.stack(lik).sum(), torch.tensor(1.0))
    # an invalid gold path costs a lot, but stays finite
    bad = crf.nll(em, torch.tensor([[2, 3, 0], [0, 0, 0]]), mask)  # I-X at the start
    assert torch.isfinite(bad).all() and bad[0] > 1e3
    loss = crf.nll(em.float().requires_grad_(), gold, mask).sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in crf.parameters())


def test_marginals_under_inference_mode_and_state_dict():
    tags = tag_names(["A", "B"], "bio")
    crf = randomized(tags, "bio", torch.Generator().manual_seed(2))
    em = torch.randn(2, 5, len(tags))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = crf.marginals(em, mask)
    with torch.inference_mode():
        got = crf.marginals(em, mask)
        paths = crf.decode(em, mask)
    torch.testing.assert_close(got, expected)
    assert set(crf.state_dict()) == {"start", "end", "transitions"}
    other = CRF(tags, "bio").to(torch.float64)
    other.load_state_dict(crf.state_dict())
    assert other.trans_ok.dtype == torch.bool and other.decode(em, mask) == paths


@settings(max_examples=150, deadline=None)
@given(
    scheme=st.sampled_from(["bio", "bioes"]),
    n_types=st.integers(1, 3),
    lengths=st.lists(st.integers(0, 7), min_size=1, max_size=4),
    scale=st.sampled_from([1.0, 1e3, 1e6]),
    attack=st.sampled_from(["none", "inside", "outside"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_decoded_paths_always_valid(scheme, n_types, lengths, scale, attack, seed):
    tags = tag_names([f"T{i}" for i in range(n_types)], scheme)
    gen = torch.Generator().manual_seed(seed)
    crf = randomized(tags, scheme, gen)
    inside = torch.tensor([t[0] in "IE" for t in tags])  # need an open chunk
    opener = torch.tensor([t[0] in "BI" for t in tags])  # leave a chunk open
    with torch.no_grad():  # learned scores pushing hard towards forbidden moves
        crf.start += 1e6 * inside
        crf.end += 1e6 * opener
        crf.transitions += 1e6 * inside[None, :] * ~opener[:, None]
    width = max(max(lengths), 1)
    em = torch.randn(len(lengths), width, len(tags), generator=gen) * scale
    if attack == "inside":  # I-/E- tags win every position by far
        em += 1e3 * inside
    elif attack == "outside":  # alternate O and I-/E-: each chunk is an orphan
        em[:, ::2, 0] += 1e3
        em[:, 1::2] += 1e3 * inside
    mask = torch.arange(width)[None] < torch.tensor(lengths)[:, None]
    for path, length in zip(crf.decode(em, mask), lengths, strict=True):
        names = [tags[i] for i in path]
        assert len(names) == length and valid(names, scheme), names
        covered = {i for _, a, b in entities(names, scheme) for i in range(a, b)}
        assert covered == {i for i, t in enumerate(names) if t != "O"}, names
    marg = crf.marginals(em, mask)
    assert torch.isfinite(marg).all()
    torch.testing.assert_close(marg.sum(-1), mask.float(), atol=1e-4, rtol=0)


def synthetic(scheme: str, gen: torch.Generator, batch: int = 32, width: int = 10):
    """Valid tag sequences of random lengths, and hidden states that encode each word's tag
    plus noise."""
    tags = tag_names(["A", "B"], scheme)
    ids = torch.full((batch, width), -100)
    for r in range(batch):
        length = int(torch.randint(1, width + 1, (1,), generator=gen))
        row = []
        while len(row) < length:
            if torch.rand(1, generator=gen) < 0.5:
                row.append("O")
                continue
            kind = "AB"[int(torch.randint(2, (1,), generator=gen))]
            size = min(int(torch.randint(1, 4, (1,), generator=gen)), length - len(row))
            chunk = [f"B-{kind}"] + [f"I-{kind}"] * (size - 1)
            if scheme == "bioes":
                chunk = [f"S-{kind}"] if size == 1 else chunk[:-1] + [f"E-{kind}"]
            row += chunk
        assert valid(row, scheme)
        ids[r, :length] = torch.tensor([tags.index(t) for t in row])
    mask = ids != -100
    table = torch.randn(len(tags), 16, generator=gen)
    hidden = table[ids.clamp(min=0)] + 0.3 * torch.randn(batch, width, 16, generator=gen)
    return tags, hidden, ids, mask


@pytest.mark.parametrize(
    ("head", "fuse_with", "fusion", "scheme"),
    [
        ("linear", None, "weighted", "bio"),
        ("bilstm", None, "weighted", "bioes"),
        ("crf", None, "weighted", "bio"),
        ("bilstm_crf", None, "weighted", "bioes"),
        ("crf", "linear", "weighted", "bioes"),
        ("crf", "bilstm", "gate", "bio"),
    ],
)
def test_heads_learn(head, fuse_with, fusion, scheme):
    torch.manual_seed(0)
    tags, hidden, gold, mask = synthetic(scheme, torch.Generator().manual_seed(3))
    model = NerHead(16, tags, scheme, head, fuse_with, fusion, lstm_hidden=16, dropout=0.1)
    assert model.describe() == head + (f" + {fuse_with} ({fusion})" if fuse_with else "")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(200):
        loss, n_words = model.loss(hidden, gold, mask)
        opt.zero_grad()
        (loss / n_words).backward()
        if step == 0:
            assert n_words == int(mask.sum())
            missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
            assert not missing, missing
        opt.step()
        losses.append(loss.item() / n_words)
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    ids, conf = model.decode(hidden, mask)
    right = total = 0
    for b, row in enumerate(ids):
        length = int(mask[b].sum())
        assert len(row) == len(conf[b]) == length
        assert all(0 < c <= 1 for c in conf[b])
        right += sum(int(a == g) for a, g in zip(row, gold[b, :length].tolist(), strict=True))
        total += length
        if model.crf is not None:
            assert valid([tags[i] for i in row], scheme)
    assert right / total > 0.95
    # half precision states, and an empty sequence in the batch
    empty = mask.clone()
    empty[0] = False
    ids16, conf16 = model.decode(hidden.bfloat16(), empty)
    assert ids16[0] == conf16[0] == [] and ids16[1:] == ids[1:]
    loss, n_words = model.loss(hidden.bfloat16(), gold, empty)
    assert loss.dtype == torch.float32 and n_words == int(empty.sum())


def test_head_arguments_are_checked():
    tags = tag_names(["A"], "bio")
    with pytest.raises(ValueError, match="fuse_with"):
        NerHead(8, tags, "bio", "crf", fuse_with="crf")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        NerHead(8, tags, "iob1", "crf")
