"""The console's Review tab against a real `verticalize console`: the queue of a real run
(mistakes first), decisions with their reviewer and UTC time, refusals (422) naming the
field, and the loop closed: the export is a Label Studio source that the next data stage
reads. The NER span checks run on hand-written run files (no training)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, write
from console_util import client, running_console
from markupsafe import escape

from verticalize.web.projects import Project
from verticalize.web.review_export import ExportError, add_review_source
from verticalize.web.review_queue import ReviewInputError, check_spans

HEAVY = {"train", "model", "export", "registry"}  # the Review tab reads data/ and eval/ only
NER_TEXTS = [
    ("Alice flew to Paris on Monday.", [("Alice", "PER"), ("Paris", "LOC")]),
    ("Bob met Carol in Oslo.", [("Bob", "PER"), ("Carol", "PER"), ("Oslo", "LOC")]),
]


def _light_copy(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if Path(folder).parent.name == "runs" and n in HEAVY]


def _spans(text: str, entities) -> list[list]:
    return [[text.index(w), text.index(w) + len(w), t] for w, t in entities]


def _ner_project(root: Path) -> None:
    """A NER project whose run has a data manifest and eval/predictions.jsonl in the format
    the NER evaluation writes (id, text, gold, pred, errors)."""
    folder = root / "ner"
    write(folder / "sentences.jsonl", "".join(json.dumps({"text": t}) + "\n" for t, _ in NER_TEXTS))
    write(
        folder / "verticalize.yaml",
        """
        name: ner
        domain: travel
        task: ner
        data:
          sources:
            - path: sentences.jsonl
        model:
          base: all-MiniLM-L6-v2
        """,
    )
    run = folder / "runs" / "ner"
    write(run / "data" / "manifest.json", json.dumps({"labels": ["LOC", "PER"]}))
    rows = []
    for i, (text, entities) in enumerate(NER_TEXTS):
        gold = _spans(text, entities)
        pred = gold[:1] if i == 0 else gold  # the first sentence: the model misses Paris
        rows.append(
            {"id": f"s0:{i + 1}", "text": text, "gold": gold, "pred": pred, "errors": 1 - min(i, 1)}
        )
    write(run / "eval" / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def review_root(console_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review") / "root"
    shutil.copytree(console_root, root, ignore=_light_copy)
    config = root / "reviews" / "verticalize.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text("# the expert's own notes stay\n" + text, encoding="utf-8")
    _ner_project(root)
    return root


@pytest.fixture(scope="module")
def console(review_root: Path):
    with running_console(review_root) as url:
        c = client(url)
        yield c
        c.close()


def _predictions(root: Path) -> list[dict]:
    path = root / "reviews" / "runs" / "reviews" / "eval" / "predictions.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_queue_shows_the_mistakes_first_then_the_least_confident(console, review_root):
    page = console.get("/review/reviews")
    assert page.status_code == 200
    assert '<label for="reviewer">' in page.text and 'aria-current="page">Review' in page.text
    order = re.findall(
        r'<article class="review-item[^"]*" id="item-\w+" data-id="([^"]+)"', page.text
    )
    rows = {r["id"]: r for r in _predictions(review_root)}
    mistakes = [i for i, r in rows.items() if r["pred"] != r["gold"]]
    assert mistakes and len(order) == len(rows)
    assert set(order[: len(mistakes)]) == set(mistakes)
    scores = [rows[i]["confidence"] for i in order]
    assert scores[: len(mistakes)] == sorted(scores[: len(mistakes)], reverse=True)
    assert scores[len(mistakes) :] == sorted(scores[len(mistakes) :])
    test = review_root / "reviews" / "runs" / "reviews" / "data" / "test.jsonl"
    first = next(json.loads(x) for x in test.read_text().splitlines() if order[0] in x)
    article = page.text.split(f'data-id="{order[0]}"')[1].split("</article>")[0]
    assert f'<dd class="recorded">{rows[order[0]]["gold"]}</dd>' in article
    assert f'value="{rows[order[0]]["pred"]}" class="accept-predicted"' in article
    assert f"score {rows[order[0]]['confidence']:.3f}" in article
    assert str(escape(first["text"][:40])) in article


def test_a_decision_needs_a_reviewer_and_a_label_of_the_set(console, review_root):
    item = next(r["id"] for r in _predictions(review_root))
    cases = [
        ({"item": item, "label": "positive"}, "reviewer: empty"),
        ({"item": item, "label": "positive", "reviewer": "  "}, "reviewer: empty"),
        ({"item": item, "label": "excellent", "reviewer": "ann"}, "label: 'excellent'"),
        ({"item": "s9:999", "label": "positive", "reviewer": "ann"}, "item: 's9:999'"),
    ]
    for form, message in cases:
        refused = console.post("/review/decide/reviews", data=form)
        assert refused.status_code == 422, form
        assert message in refused.text and "Fix:" in refused.text
        assert "Traceback" not in refused.text
    assert "excellent" in console.post("/review/decide/reviews", data=cases[2][0]).text
    assert not (review_root / "reviews" / "review" / "decisions.jsonl").exists()
    nothing = console.post("/review/export/reviews")
    assert nothing.status_code == 422 and "no decision yet" in nothing.text


def test_a_correction_is_recorded_exported_and_read_by_the_next_run(console, review_root):
    folder = review_root / "reviews"
    mistake = next(r for r in _predictions(review_root) if r["pred"] != r["gold"])
    corrected = next(x for x in ("negative", "neutral", "positive") if x != mistake["gold"])
    before = datetime.now(UTC) - timedelta(seconds=1)
    answer = console.post(
        "/review/decide/reviews",
        data={"item": mistake["id"], "label": corrected, "reviewer": "Dr. Ada"},
    )
    assert answer.status_code == 200
    assert (
        f'<strong class="label">{corrected}</strong> by <span class="who">Dr. Ada</span>'
        in answer.text
    )
    rows = [json.loads(x) for x in (folder / "review" / "decisions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"], r["reviewer"]) for r in rows] == [
        (mistake["id"], corrected, "Dr. Ada")
    ]
    when = datetime.fromisoformat(rows[0]["time"])
    assert when.utcoffset() == timedelta(0) and before <= when <= datetime.now(UTC)
    assert "Dr. Ada" in console.get("/review/reviews").text  # the page shows the decision

    exported = console.post("/review/export/reviews")
    assert exported.status_code == 200
    assert '<strong id="export-count">1</strong>' in exported.text
    assert "review/labelstudio.json" in exported.text and 'id="export-source"' in exported.text
    tasks = json.loads((folder / "review" / "labelstudio.json").read_text())
    assert tasks[0]["annotations"][0]["result"][0]["value"]["choices"] == [corrected]
    text = (folder / "verticalize.yaml").read_text()
    assert text.startswith("# the expert's own notes stay\n")
    sources = yaml.safe_load(text)["data"]["sources"]
    assert (
        sources[-1]["path"] == "review/labelstudio.json" and sources[-1]["format"] == "labelstudio"
    )
    again = console.post("/review/export/reviews")  # the source is added once
    assert "Already in" in again.text and (folder / "verticalize.yaml").read_text() == text

    done = run_cli("data", "verticalize.yaml", "--force", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    data = folder / "runs" / "reviews" / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    counted = [s for s in manifest["sources"] if s["path"] == "review/labelstudio.json"]
    assert counted and counted[0]["rows"] == 1
    split = [
        json.loads(x)
        for name in ("train", "validation", "test")
        for x in (data / f"{name}.jsonl").read_text().splitlines()
    ]
    reviewed = [r for r in split if r.get("meta", {}).get("record_id") == mistake["id"]]
    assert [(r["label"], r["meta"]["reviewer"]) for r in reviewed] == [(corrected, "Dr. Ada")]
    assert mistake["id"] not in {r["id"] for r in split}  # the original copy is superseded
    assert manifest["dropped"].get("superseded_by_review") == 1


def test_ner_spans_are_checked_then_recorded(console, review_root):
    page = console.get("/review/ner")
    assert page.status_code == 200
    assert page.text.index('data-id="s0:1"') < page.text.index('data-id="s0:2"')  # mistake first
    assert '<mark class="ent" data-type="LOC">Paris<small>LOC</small></mark>' in page.text
    text, _ = NER_TEXTS[0]
    overlap = [[0, 5, "PER"], [3, 8, "LOC"]]
    refused = console.post(
        "/review/decide/ner", data={"item": "s0:1", "reviewer": "ann", "spans": json.dumps(overlap)}
    )
    assert refused.status_code == 422 and "overlap" in refused.text
    fixed = _spans(text, [("Alice", "PER"), ("Paris", "LOC"), ("Monday", "LOC")])
    saved = console.post(
        "/review/decide/ner", data={"item": "s0:1", "reviewer": "ann", "spans": json.dumps(fixed)}
    )
    assert saved.status_code == 200 and "3 spans, by" in saved.text
    exported = console.post("/review/export/ner")
    assert exported.status_code == 200
    (task,) = json.loads((review_root / "ner" / "review" / "labelstudio.json").read_text())
    values = [r["value"] for r in task["annotations"][0]["result"]]
    assert [(v["start"], v["end"], v["text"], v["labels"]) for v in values] == [
        (0, 5, "Alice", ["PER"]),
        (14, 19, "Paris", ["LOC"]),
        (23, 29, "Monday", ["LOC"]),
    ]


def test_span_validation():
    text = "Bob met Carol."
    assert check_spans('[[8, 13, "PER"], [0, 3, "PER"]]', text, ["PER"]) == [
        [0, 3, "PER"],
        [8, 13, "PER"],
    ]
    assert check_spans([], text, ["PER"]) == []
    for bad, message in [
        ("[[0, 3, 'PER']]", "is not JSON"),
        ('{"a": 1}', "is not a list"),
        ("[[0, 3]]", "is not [start, end, TYPE]"),
        ('[[true, 3, "PER"]]', "is not [start, end, TYPE]"),
        ('[[3, 3, "PER"]]', "does not fit"),
        ('[[8, 99, "PER"]]', "does not fit the text of 14 characters"),
        ('[[0, 3, "ORG"]]', "type 'ORG'"),
        ('[[0, 5, "PER"], [4, 7, "PER"]]', "overlap"),
    ]:
        with pytest.raises(ReviewInputError, match=re.escape(message)):
            check_spans(bad, text, ["PER"])


def test_the_source_is_added_to_a_flow_list_and_a_bad_edit_is_rolled_back(tmp_path):
    write(tmp_path / "x.jsonl", '{"text": "a", "label": "a"}\n')
    config = write(
        tmp_path / "verticalize.yaml",
        """
        name: t  # mine
        data:
          sources: [{path: x.jsonl}]  # one file
          labels: [a, b]
        model: {base: all-MiniLM-L6-v2}
        """,
    )
    project = Project("t", tmp_path, config)
    original = config.read_text()
    with pytest.raises(ExportError, match="unchanged.*labelstudio.json"):  # no export file yet
        add_review_source(project)
    assert config.read_text() == original
    write(tmp_path / "review" / "labelstudio.json", "[]")
    assert add_review_source(project) is True
    edited = config.read_text()
    assert "name: t  # mine" in edited and "]  # one file" in edited
    paths = [s["path"] for s in yaml.safe_load(edited)["data"]["sources"]]
    assert paths == ["x.jsonl", "review/labelstudio.json"]
    assert add_review_source(project) is False
