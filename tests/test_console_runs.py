"""The console's Runs, Compare and Registry pages against a real console: the fixture's
tracked run and registered version as the pages show them, and (slow: it trains a second
run of the same test set) sorting, comparing, promoting and rolling back through the pages."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from console_util import client, copy_root, running_console

from verticalize import api
from verticalize.evaluate.compare import compare_runs

ROW = re.compile(r'<tr data-run-id="([0-9a-f]{32})"')
VERSION = re.compile(r'<tr data-version="(\d+)" data-aliases="([^"]*)"')


def _run_id(run: Path) -> str:
    return json.loads((run / "train" / "tracking.json").read_text(encoding="utf-8"))["run_id"]


def _store(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def _aliases(page: str) -> dict[str, str]:
    return dict(VERSION.findall(page))


def _decision(page: str) -> str:
    found = re.search(r'<section id="registry-decision".*?</section>', page, re.S)
    assert found, page[:2000]
    return html.unescape(found.group(0))


@pytest.fixture(scope="module")
def fixture_console(console_root: Path):
    """A console on the shared fixture; these tests only read it (and refused POSTs)."""
    with running_console(console_root) as url:
        yield url, client(url)


def test_runs_table_lists_the_fixture_run_with_its_metrics(console_root, fixture_console):
    _, c = fixture_console
    run = console_root / "reviews" / "runs" / "reviews"
    tracked = {r["run_id"]: r for r in api.runs(uri=_store(console_root))}[_run_id(run)]

    page = c.get("/runs")
    assert page.status_code == 200
    assert _run_id(run) in ROW.findall(page.text)
    row = page.text.split(f'data-run-id="{_run_id(run)}"', 1)[1].split("</tr>", 1)[0]
    assert 'value="reviews/runs/reviews"' in row  # evaluated: it can be picked to compare
    assert f"{tracked['train_loss']:.4f}" in row
    assert f"{tracked['best_value']:.4f}" in row
    assert f"{tracked['test']['macro_f1']:.4f}" in row and "macro_f1" in row
    assert f">{tracked['steps']}<" in row
    assert 'aria-sort="descending"' in page.text  # started, newest first by default

    narrowed = c.get("/runs", params={"q": "no-such-run-name"})
    assert ROW.findall(narrowed.text) == [] and "match this filter" in narrowed.text
    by_project = c.get("/runs", params={"project": "reviews", "q": tracked["run_name"]})
    assert _run_id(run) in ROW.findall(by_project.text)

    bad = c.get("/runs", params={"sort": "colour"})
    assert bad.status_code == 422
    assert "sort: 'colour' is not a column" in html.unescape(bad.text)
    assert "Traceback" not in bad.text and _run_id(run) in ROW.findall(bad.text)


def test_compare_refuses_a_pair_that_cannot_be_compared(fixture_console):
    _, c = fixture_console
    not_evaluated = c.get("/runs/compare", params={"a": "reviews", "b": "reviews/runs/reviews"})
    assert not_evaluated.status_code == 422
    text = html.unescape(not_evaluated.text)
    assert "cannot be compared" in text and "eval/predictions.jsonl" in text
    assert "Traceback" not in text

    unknown = c.get("/runs/compare", params={"a": "../outside", "b": "reviews/runs/reviews"})
    assert unknown.status_code == 404
    assert "a: no run folder '../outside'" in html.unescape(unknown.text)
    hostile = c.get("/runs/compare", params={"a": "<script>x()</script>", "b": "y"})
    assert hostile.status_code == 404 and "<script>x()" not in hostile.text  # escaped

    one = c.get("/runs/compare", params={"run": "reviews/runs/reviews"})
    assert one.status_code == 422 and "1 run(s) picked" in one.text

    form = c.get("/runs/compare")
    assert form.status_code == 200
    assert '<option value="reviews/runs/reviews"' in form.text  # the evaluated folder to pick


def test_registry_lists_version_1_as_champion_and_refuses_what_it_cannot_do(
    console_root, fixture_console
):
    _, c = fixture_console
    store = _store(console_root)
    page = c.get("/registry")
    assert page.status_code == 200
    assert f'data-store="{store}"' in page.text
    assert _aliases(page.text)["1"] == "champion"
    value = api.versions("reviews", tracking_uri=store)[0]["value"]
    assert f"{value:.4f}" in page.text

    # refusals change nothing: no challenger to promote, no earlier champion to restore
    no_challenger = c.post("/registry/promote", data={"name": "reviews", "store": store})
    assert no_challenger.status_code == 409
    assert "there is no challenger to promote" in _decision(no_challenger.text)
    no_history = c.post("/registry/rollback", data={"name": "reviews", "store": store})
    assert no_history.status_code == 409
    assert "no earlier champion" in _decision(no_history.text)

    elsewhere = c.post("/registry/promote", data={"name": "reviews", "store": "sqlite:////x.db"})
    assert elsewhere.status_code == 422
    assert "store: 'sqlite:////x.db' is not the registry" in _decision(elsewhere.text)
    bad_margin = c.post(
        "/registry/promote", data={"name": "reviews", "store": store, "margin": "-0.5"}
    )
    assert bad_margin.status_code == 422 and "margin: '-0.5'" in _decision(bad_margin.text)
    assert [v["aliases"] for v in api.versions("reviews", tracking_uri=store)][0] == ["champion"]


# ------------------------------------------------------ a second run of the same test set


@pytest.fixture(scope="module")
def two_runs(console_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the fixture with its own MLflow store and a second run (runs/b, another
    learning rate, same data split) trained, evaluated and registered as the challenger;
    yields (root, console URL, client)."""
    root = tmp_path_factory.mktemp("runs-pages")
    skip = shutil.ignore_patterns("mlartifacts", "checkpoints", "*.safetensors", "tb", "export")
    copy_root(console_root, root, ignore=skip)
    yaml = root / "reviews" / "verticalize.yaml"
    sets = ["train.lr=3e-4", "export.onnx=false", "export.quantize=false", "eval.baselines=[]"]
    sets.append("registry.margin=1")  # stays challenger: the console promotes it
    options = [x for s in sets for x in ("--set", s)]
    done = run_cli("run", "verticalize.yaml", "--run-dir", "runs/b", *options, cwd=yaml.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    with running_console(root) as url:
        yield root, url, client(url)


@pytest.mark.slow
def test_runs_sort_by_any_column_and_filter(two_runs):
    root, _, c = two_runs
    tracked = api.runs(uri=_store(root))
    assert len(tracked) == 2
    by_loss = [r["run_id"] for r in sorted(tracked, key=lambda r: r["train_loss"])]

    up = c.get("/runs", params={"sort": "loss", "dir": "asc"})
    down = c.get("/runs", params={"sort": "loss", "dir": "desc"})
    assert ROW.findall(up.text) == by_loss
    assert ROW.findall(down.text) == by_loss[::-1]
    assert re.search(r'data-col="loss" aria-sort="ascending"', up.text)
    assert "/runs?sort=loss&amp;dir=desc" in up.text  # the header link flips the order

    b_id = _run_id(root / "reviews" / "runs" / "b")
    b_name = next(r["run_name"] for r in tracked if r["run_id"] == b_id)
    only_b = c.get("/runs", params={"q": b_name.upper(), "sort": "loss"})
    assert ROW.findall(only_b.text) == [b_id]


@pytest.mark.slow
def test_compare_two_runs_shows_deltas_verdict_and_both_loss_curves(two_runs):
    root, _, c = two_runs
    a, b = root / "reviews" / "runs" / "reviews", root / "reviews" / "runs" / "b"
    expected = compare_runs(a, b)

    page = c.get(
        "/runs/compare", params=[("run", "reviews/runs/reviews"), ("run", "reviews/runs/b")]
    )
    assert page.status_code == 200, page.text[:2000]
    text = html.unescape(page.text)
    for name, m in expected["metrics"].items():
        row = text.split(f'data-metric="{name}"', 1)[1].split("</tr>", 1)[0]
        assert f"{m['delta']:+.4f}" in row
        assert f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]" in row
    assert expected["verdict"] in text
    assert ("Not significant" in text) != expected["significant"]
    assert '<polyline class="series" data-run="A"' in text
    assert '<polyline class="series b" data-run="B"' in text
    assert 'id="loss-legend"' in text and "reviews/runs/b" in text

    # the same pair named by their MLflow run ids (the first run's run_dir tag points at the
    # original fixture, so its folder here is found through train/tracking.json)
    by_id = c.get("/runs/compare", params={"a": _run_id(a), "b": _run_id(b)})
    assert by_id.status_code == 200 and expected["verdict"] in html.unescape(by_id.text)

    # a run evaluated on another test set: 422 with the reason
    half = root / "reviews" / "runs" / "half"
    shutil.copytree(b, half, ignore=shutil.ignore_patterns("model", "checkpoints", "best"))
    lines = (half / "eval" / "predictions.jsonl").read_text("utf-8").splitlines()
    (half / "eval" / "predictions.jsonl").write_text("\n".join(lines[:5]) + "\n", "utf-8")
    bad = c.get("/runs/compare", params={"a": "reviews/runs/reviews", "b": "reviews/runs/half"})
    assert bad.status_code == 422
    assert "different test sets" in html.unescape(bad.text)


@pytest.mark.slow
def test_promote_through_the_gate_then_roll_back(two_runs):
    root, _, c = two_runs
    store = _store(root)
    page = c.get("/registry")
    assert _aliases(page.text) == {"1": "champion", "2": "challenger"}
    values = {v["version"]: v["value"] for v in api.versions("reviews", tracking_uri=store)}

    refused = c.post("/registry/promote", data={"name": "reviews", "store": store, "margin": "1"})
    assert refused.status_code == 409
    said = _decision(refused.text)
    assert f"version 1: {values['1']:.4f}" in said and f"version 2: {values['2']:.4f}" in said
    assert 'data-score="margin">1<' in said and "does not beat champion version 1" in said
    aliases = {v["version"]: v["aliases"] for v in api.versions("reviews", tracking_uri=store)}
    assert aliases == {"1": ["champion"], "2": ["challenger"]}

    forced = c.post(
        "/registry/promote", data={"name": "reviews", "store": store, "margin": "1", "force": "1"}
    )
    assert forced.status_code == 200
    said = _decision(forced.text)
    assert "version 2 is now the champion (it replaced version 1)" in said
    assert f"version 1: {values['1']:.4f}" in said and f"version 2: {values['2']:.4f}" in said
    aliases = {v["version"]: v["aliases"] for v in api.versions("reviews", tracking_uri=store)}
    assert aliases == {"1": [], "2": ["champion"]}
    assert _aliases(forced.text) == {"1": "", "2": "champion"}

    back = c.post("/registry/rollback", data={"name": "reviews", "store": store})
    assert back.status_code == 200
    assert "the champion is version 1 again" in _decision(back.text)
    aliases = {v["version"]: v["aliases"] for v in api.versions("reviews", tracking_uri=store)}
    assert aliases == {"1": ["champion"], "2": ["rolled_back"]}
