"""Entity metrics against the reference implementation seqeval (strict mode), on random and
deliberately invalid tag sequences, for IOB2 ("bio") and IOBES ("bioes")."""

import warnings

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES, Entities

from verticalize.data.tags import entities
from verticalize.tasks.ner.metrics import entity_scores, tag_scores

TYPES = ("PER", "LOC", "geo-loc")  # a hyphen inside the type too, as WNUT has
SCHEMES = {"bio": (IOB2, "BI"), "bioes": (IOBES, "BIES")}
TOL = 1e-12


def _tags(prefixes: str):
    return st.one_of(
        st.just("O"),
        st.builds(lambda p, t: f"{p}-{t}", st.sampled_from(prefixes), st.sampled_from(TYPES)),
    )


@st.composite
def gold_and_pred(draw, prefixes: str):
    """Aligned gold/pred sentences of any tags of the scheme (so also invalid sequences: I-X
    after O, E without B, a type change inside a chunk, S inside a chunk); pred copies many
    gold tags so that entities often match."""
    tag = _tags(prefixes)
    n_sent = draw(st.integers(1, 5))
    gold, pred = [], []
    for _ in range(n_sent):
        g = draw(st.lists(tag, min_size=0, max_size=12))
        p = [t if draw(st.integers(0, 3)) else draw(tag) for t in g]
        gold.append(g)
        pred.append(p)
    return gold, pred


def _seqeval(gold, pred, scheme_cls) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nan macro average when there is no entity at all
        return classification_report(
            gold, pred, mode="strict", scheme=scheme_cls, output_dict=True, zero_division=0
        )


def _check_parity(gold, pred, scheme: str) -> None:
    scheme_cls, _ = SCHEMES[scheme]
    # the entities themselves, sentence by sentence
    for sent in gold + pred:
        ref = [(e.tag, e.start, e.end) for e in Entities([sent], scheme_cls).entities[0]]
        assert entities(sent, scheme) == ref, sent
    ours = tag_scores(gold, pred, scheme)
    ref = _seqeval(gold, pred, scheme_cls)
    types = sorted(k for k in ref if not k.endswith(" avg"))
    assert sorted(ours["per_type"]) == types
    for t in types:
        mine, theirs = ours["per_type"][t], ref[t]
        assert mine["precision"] == pytest.approx(theirs["precision"], abs=TOL)
        assert mine["recall"] == pytest.approx(theirs["recall"], abs=TOL)
        assert mine["f1"] == pytest.approx(theirs["f1-score"], abs=TOL)
        assert mine["support"] == theirs["support"]
    if not types:  # seqeval's macro average is nan here; ours is 0.0 (zero division)
        assert ours["entity_f1_macro"] == 0.0 and ours["n_gold"] == ours["n_pred"] == 0
        return
    for avg in ("micro", "macro"):
        theirs = ref[f"{avg} avg"]
        assert ours[f"entity_precision_{avg}"] == pytest.approx(theirs["precision"], abs=TOL)
        assert ours[f"entity_recall_{avg}"] == pytest.approx(theirs["recall"], abs=TOL)
        assert ours[f"entity_f1_{avg}"] == pytest.approx(theirs["f1-score"], abs=TOL)
    assert ours["n_gold"] == ref["micro avg"]["support"]
    kw = {"mode": "strict", "scheme": scheme_cls, "zero_division": 0}
    assert ours["entity_f1_micro"] == pytest.approx(f1_score(gold, pred, **kw), abs=TOL)
    assert ours["entity_precision_micro"] == pytest.approx(
        precision_score(gold, pred, **kw), abs=TOL
    )
    assert ours["entity_recall_micro"] == pytest.approx(recall_score(gold, pred, **kw), abs=TOL)
    assert all(isinstance(ours[k], float) for k in ours if k.startswith("entity_"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gold_and_pred("BI"))
@example(([["O", "I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "I-PER", "O"]]))  # I after O
@example(([["B-PER", "I-LOC", "I-LOC"]], [["B-PER", "I-PER", "I-LOC"]]))  # type change
@example(([["B-PER", "B-PER", "I-PER"]], [["B-PER", "I-PER", "I-PER"]]))
def test_bio_parity_with_seqeval(data):
    _check_parity(*data, "bio")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gold_and_pred("BIES"))
@example(([["O", "E-PER", "O", "I-PER", "E-PER"]], [["B-PER", "E-PER", "O", "B-PER", "E-PER"]]))
@example(([["B-LOC", "I-LOC", "E-PER", "S-PER"]], [["B-LOC", "I-PER", "E-PER", "S-PER"]]))
@example(([["B-PER", "S-PER", "E-PER", "B-PER"]], [["B-PER", "I-PER", "E-PER", "B-PER"]]))
@example(([["B-PER", "I-PER"], ["S-LOC"]], [["B-PER", "E-PER"], ["B-LOC"]]))  # no E at the end
def test_bioes_parity_with_seqeval(data):
    _check_parity(*data, "bioes")


def test_invalid_sequences_read_strictly():
    # a chunk without its opening B (or S) is no entity; one without its closing E neither
    assert entities(["O", "I-PER", "I-PER"], "bio") == []
    assert entities(["B-PER", "I-LOC", "I-PER"], "bio") == [("PER", 0, 1)]
    assert entities(["B-PER", "I-PER", "S-PER", "E-PER"], "bioes") == [("PER", 2, 3)]
    assert entities(["E-PER", "B-LOC", "E-LOC"], "bioes") == [("LOC", 1, 3)]


def test_token_accuracy_and_counts_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O"]]
    out = tag_scores(gold, pred, "bio")
    assert out["token_accuracy"] == pytest.approx(4 / 6)
    assert (out["n_gold"], out["n_pred"], out["n_correct"]) == (2, 2, 1)
    # PER found; the LOC predicted in sentence 2 is not the gold LOC of sentence 1
    assert out["per_type"]["PER"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 1,
        "predicted": 1,
    }
    assert out["per_type"]["LOC"]["f1"] == 0.0
    assert out["entity_f1_micro"] == pytest.approx(0.5)
    assert out["entity_f1_macro"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        tag_scores(gold, [["O"], ["O", "O"]], "bio")


def test_entity_scores_on_character_offsets():
    text = "Ada Lovelace met Charles Babbage in London."
    gold = [[("PER", 0, 12), ("PER", 17, 32), ("LOC", 36, 42)]]
    pred = [[("PER", 0, 12), ("PER", 17, 24), ("LOC", 36, 42), ("ORG", 36, 42)]]
    assert text[36:42] == "London" and text[17:32] == "Charles Babbage"
    out = entity_scores(gold, pred)
    assert (out["n_gold"], out["n_pred"], out["n_correct"]) == (3, 4, 2)
    assert out["entity_precision_micro"] == pytest.approx(2 / 4)
    assert out["entity_recall_micro"] == pytest.approx(2 / 3)
    assert out["entity_f1_micro"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert sorted(out["per_type"]) == ["LOC", "ORG", "PER"]
    per = out["per_type"]
    assert per["PER"]["precision"] == 0.5 and per["PER"]["recall"] == 0.5
    assert per["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 1}
    # macro over LOC (1.0), ORG (0.0), PER (0.5)
    assert out["entity_f1_macro"] == pytest.approx(0.5)
    assert out["entity_recall_macro"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    # the same offsets in another sentence do not match
    moved = entity_scores([[("LOC", 36, 42)], []], [[], [("LOC", 36, 42)]])
    assert moved["n_correct"] == 0 and moved["entity_f1_micro"] == 0.0
