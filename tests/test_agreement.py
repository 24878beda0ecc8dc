import math
import random

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from verticalize.config import AgreementConfig
from verticalize.data.agreement import (
    agreement_report,
    cohen_kappa,
    krippendorff_alpha_nominal,
    resolve_label,
)
from verticalize.errors import DataError


def _random_units(rng: random.Random, n_items: int, n_coders: int, labels: str, missing: float):
    truth = [rng.choice(labels) for _ in range(n_items)]
    return [
        [
            None if rng.random() < missing else (t if rng.random() < 0.7 else rng.choice(labels))
            for _ in range(n_coders)
        ]
        for t in truth
    ]


@pytest.mark.parametrize("case", range(8))
def test_alpha_matches_the_krippendorff_package(case):
    rng = random.Random(case)
    units = _random_units(rng, rng.randint(5, 60), rng.randint(2, 6), "ABCD"[: 2 + case % 3], 0.3)
    codes = {"A": 0, "B": 1, "C": 2, "D": 3}
    data = np.array(
        [[np.nan if v is None else codes[v] for v in unit] for unit in units], dtype=float
    ).T  # the package wants annotators × items
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert krippendorff_alpha_nominal(units) == pytest.approx(expected, abs=1e-9)


def test_alpha_known_values_and_undefined():
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"], ["a", None]]) == 1.0
    # two annotators who always disagree on a balanced pair of labels
    assert krippendorff_alpha_nominal([["a", "b"], ["b", "a"]]) < 0
    assert math.isnan(krippendorff_alpha_nominal([["a", "a"], ["a", None]]))
    assert math.isnan(krippendorff_alpha_nominal([["a", None], [None, "b"]]))


def test_kappa_matches_sklearn():
    rng = random.Random(3)
    for _ in range(5):
        a = [rng.choice("xyz") for _ in range(40)]
        b = [v if rng.random() < 0.6 else rng.choice("xyz") for v in a]
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert math.isnan(cohen_kappa(["x", "x"], ["x", "x"])) and math.isnan(cohen_kappa([], []))


def test_resolve_label_majority_and_tie():
    ann = [{"annotator": "a", "label": "pos"}, {"annotator": "b", "label": "neg"}]
    assert resolve_label(ann) == (None, "annotator_tie")
    assert resolve_label([*ann, {"annotator": "c", "label": "neg"}]) == ("neg", None)
    assert resolve_label([]) == (None, "no_annotations")


def _records(rng: random.Random, n: int) -> list[dict]:
    records = []
    for i in range(n):
        truth = rng.choice(["pos", "neg", "neu"])
        names = ["ann1", "ann2", "ann3"] + (["ann4"] if i % 2 else [])
        anns = [
            {"annotator": a, "label": truth if rng.random() < 0.8 else rng.choice(["pos", "neg"])}
            for a in names
        ]
        records.append({"id": f"r{i}", "text": "t", "label": None, "annotations": anns})
    return records


def test_report_per_pair_annotator_item_and_review():
    records = _records(random.Random(0), 40)
    records.append({"id": "plain", "text": "t", "label": "pos"})  # no annotations: not an item
    records.append(
        {
            "id": "tie",
            "text": "t",
            "label": None,
            "annotations": [
                {"annotator": "ann1", "label": "pos"},
                {"annotator": "ann2", "label": "neg"},
            ],
        }
    )
    cfg = AgreementConfig(alpha_target=0.99, item_threshold=0.7, review_share=0.25)
    report = agreement_report(records, cfg, seed=5)
    assert report["n_items"] == 41 and report["n_annotators"] == 4
    assert report["alpha"] < 0.99 and report["passed"] is False
    assert agreement_report(records, cfg.model_copy(update={"alpha_target": 0.1}), 5)["passed"]
    pair = next(p for p in report["pairwise_kappa"] if (p["a"], p["b"]) == ("ann1", "ann4"))
    shared = [r for r in records if r.get("annotations") and len(r["annotations"]) == 4]
    labels = [{a["annotator"]: a["label"] for a in r["annotations"]} for r in shared]
    assert pair["n_items"] == 20
    assert pair["kappa"] == pytest.approx(
        cohen_kappa_score([x["ann1"] for x in labels], [x["ann4"] for x in labels]), abs=1e-6
    )
    ann4 = next(a for a in report["annotators"] if a["annotator"] == "ann4")
    assert ann4["items"] == 20 and 0.5 < ann4["agreement_with_others"] <= 1
    tie = next(i for i in report["items"] if i["id"] == "tie")
    assert tie == {
        "id": "tie",
        "majority": None,
        "reason": "annotator_tie",
        "agreement": 0.5,
        "n_annotators": 2,
        "labels": {"neg": 1, "pos": 1},
    }
    low = {i["id"] for i in report["items"] if i["agreement"] < 0.7}
    assert set(report["review"]) == low and "tie" in low and len(low) < 41


def test_cross_review_sample_is_seeded_and_order_free():
    records = _records(random.Random(1), 50)
    cfg = AgreementConfig(review_share=0.1)
    sample = agreement_report(records, cfg, seed=11)["cross_review_sample"]
    assert len(sample) == 5 and set(sample) <= {r["id"] for r in records}
    assert agreement_report(records[::-1], cfg, seed=11)["cross_review_sample"] == sample
    assert agreement_report(records, cfg, seed=12)["cross_review_sample"] != sample


def test_annotation_without_annotator_names_the_record():
    bad = [{"id": "r9", "source": "a.jsonl", "line": 9, "annotations": [{"label": "pos"}]}]
    with pytest.raises(DataError, match="r9 \\(a.jsonl line 9\\): annotation #1"):
        agreement_report(bad, AgreementConfig(), 0)
