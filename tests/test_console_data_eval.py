"""The console's Data and Evaluation tabs, served by a real `verticalize console` over real
runs: the session's `reviews` project, and copies of it changed to set records aside (a
rule, duplicates, an e-mail address) and to judge targets."""

from __future__ import annotations

import html
import json
import re
import shutil
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from console_util import client, running_console

EXTRA_CSV = """text,label
tiny,positive
"This medicine worked well for my migraine, no side effects at all.",positive
"This medicine worked well for my migraine, no side effects at all.",positive
"This medicine worked well for my migraine, no side effects at all!!",positive
"Terrible nausea for a week, write to me at jane.doe@example.com if you had it too.",negative
"Same text twice but opposite labels here, clearly a conflict.",negative
"Same text twice but opposite labels here, clearly a conflict.",positive
"""


def _edit_yaml(folder: Path, change) -> None:
    path = folder / "verticalize.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def _add_rejects(cfg: dict) -> None:
    data = cfg["data"]
    data["sources"].append({"path": "extra.csv"})
    data["rules"] = [{"rule": "length", "field": "text", "min": 20, "name": "too_short"}]
    data["dedup"] = {"near": {"enabled": True}}
    data["pii"] = {"enabled": True}


def _add_targets(cfg: dict) -> None:
    cfg["eval"]["baselines"] = ["lightgbm"]  # one baseline keeps the re-evaluation short
    cfg["eval"]["targets"] = [
        {"metric": "accuracy", "target": 0.5},
        {"metric": "macro_f1", "beat": "strongest_baseline", "by": 0.01},
    ]


@pytest.fixture(scope="module")
def shared(console_root: Path):
    """A console over the session's root (its `reviews` run is only read)."""
    with running_console(console_root) as url, closing(client(url)) as c:
        yield c


@pytest.fixture(scope="module")
def changed(console_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A console over copies of `reviews`: `rejects` (data stage only, with records a rule,
    dedup and PII act on), `targets` (re-evaluated with eval.targets), `fresh` (never run;
    its eval/report.html a link out of the run folder)."""
    root = tmp_path_factory.mktemp("data-eval")
    source = console_root / "reviews"

    rejects = root / "rejects"
    rejects.mkdir()
    shutil.copy(source / "verticalize.yaml", rejects)
    (rejects / "extra.csv").write_text(EXTRA_CSV, encoding="utf-8")
    _edit_yaml(rejects, _add_rejects)
    done = run_cli("data", "verticalize.yaml", cwd=rejects)
    assert done.returncode == 0, done.stdout + done.stderr

    targets = root / "targets"
    skip = shutil.ignore_patterns("export", "checkpoints", "best", "tb", "registry")
    shutil.copytree(source, targets, ignore=skip)
    _edit_yaml(targets, _add_targets)
    done = run_cli("eval", "verticalize.yaml", cwd=targets)
    assert done.returncode == 0, done.stdout + done.stderr

    fresh = root / "fresh"
    fresh.mkdir()
    shutil.copy(source / "verticalize.yaml", fresh)
    outside = root / "outside.html"
    outside.write_text("<p>not a report of this run</p>", encoding="utf-8")
    (fresh / "runs" / "reviews" / "eval").mkdir(parents=True)
    (fresh / "runs" / "reviews" / "eval" / "report.html").symlink_to(outside)

    with running_console(root) as url, closing(client(url)) as c:
        yield c, root


def _row(page: str, attr: str, value: str) -> str:
    """The inner HTML of the <tr> carrying attr="value"."""
    found = re.search(rf'<tr[^>]*{attr}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, f"no row {attr}={value!r}"
    return found.group(1)


def _cells(row: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
        for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
    ]


def _quarantine_rows(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr class="q-row" data-rule="([^"]*)" data-field="([^"]*)"', page)


def test_data_page_shows_the_manifest_numbers(shared, console_root):
    manifest = json.loads(
        (console_root / "reviews/runs/reviews/data/manifest.json").read_text(encoding="utf-8")
    )
    r = shared.get("/data/reviews")
    assert r.status_code == 200
    page = r.text
    assert f"<strong>{manifest['out']}</strong> written" in page
    assert f"<strong>{manifest['quarantined']}</strong> set aside" in page
    for step in manifest["steps"]:
        cells = _cells(_row(page, "data-step", step["step"]))
        assert cells[1:3] == [str(step["in"]), str(step["out"])]
        assert cells[4] == str(sum(step["dropped"].values()))
    for label in manifest["labels"]:  # nothing is set aside after ingest: before == after
        after = sum(c.get(label, 0) for c in manifest["label_counts"].values())
        cells = _cells(_row(page, "data-label", label))
        assert cells[1].startswith(f"{after} (") and cells[2].startswith(f"{after} (")
        assert [int(n) for n in cells[3:]] == [
            manifest["label_counts"][s].get(label, 0) for s in ("train", "validation", "test")
        ]
    assert 'class="bar"' in page and 'id="pii-off"' in page


def test_quarantine_filter_narrows_rows(changed):
    c, root = changed
    lines = (root / "rejects/runs/reviews/data/quarantine.jsonl").read_text("utf-8").splitlines()
    page = c.get("/data/rejects").text
    assert f"of {len(lines)}." in page
    assert re.search(r'<option value="too_short"\s*>too_short \(1\)</option>', page)
    assert re.search(r'<option value="\(none\)"\s*>\(none\) \(528\)</option>', page)
    assert len(_quarantine_rows(page)) == 50  # one page of 533

    short = c.get("/data/rejects", params={"rule": "too_short"}).text
    assert _quarantine_rows(short) == [("too_short", "text")]
    assert "4 characters, under the minimum 20" in short and "Records 1–1 of 1 matching" in short
    assert '<option value="too_short" selected>' in short

    by_label = c.get("/data/rejects", params={"field": "label"}).text
    assert _quarantine_rows(by_label) == [("conflicting_labels", "label")]
    both = c.get("/data/rejects", params={"rule": "sampled_out", "field": "text"}).text
    assert _quarantine_rows(both) == [] and "No quarantined record has rule sampled_out" in both

    second = c.get("/data/rejects", params={"rule": "sampled_out", "page": 2}).text
    assert "Records 51–100 of 528 matching" in second
    assert {r for r, _ in _quarantine_rows(second)} == {"sampled_out"}

    bad = c.get("/data/rejects", params={"page": "two"})
    assert bad.status_code == 422 and "page='two'" in bad.text and "Traceback" not in bad.text


def test_duplicates_labels_and_pii_of_a_curated_run(changed):
    c, _ = changed
    page = c.get("/data/rejects").text
    clusters = re.findall(r'<tr class="cluster" data-kind="(\w+)">(.*?)</tr>', page, re.S)
    assert [k for k, _ in clusters] == ["exact", "exact", "near"]
    exact, conflict, near = (_cells(body) for _, body in clusters)
    assert exact[1].startswith("s1:3 This medicine") and exact[2].startswith("s1:4 This medicine")
    assert conflict[1] == "none (all copies dropped)" and "s1:8" in conflict[2]
    assert near[2].startswith("s1:5") and "at all!!" in near[2]
    # set aside after ingest: 4 positive (too short, copy, near copy, conflict), 1 negative
    for label, gone in (("positive", 4), ("negative", 1), ("neutral", 0)):
        before, after = (int(x.split()[0]) for x in _cells(_row(page, "data-label", label))[1:3])
        assert before - after == gone
    assert _cells(_row(page, "data-kind", "email")) == ["email", "1"]


def test_pages_of_a_project_not_run_yet(changed):
    c, _ = changed
    data = c.get("/data/fresh")
    assert data.status_code == 200 and "The data stage has not run yet" in data.text
    report = c.get("/evaluation/fresh")
    assert report.status_code == 200 and "No evaluation report yet" in report.text
    # its report.html is a link to a file outside the run folder: not served
    assert c.get("/evaluation/report/fresh").status_code == 404


def test_evaluation_page_shows_targets_and_margin(changed, shared, console_root):
    c, root = changed
    report = json.loads((root / "targets/runs/reviews/eval/report.json").read_text("utf-8"))
    page = c.get("/evaluation/targets").text
    assert len(report["targets"]) == 2
    for t in report["targets"]:
        cells = _cells(_row(page, "data-metric", t["metric"]))
        assert cells == [
            t["metric"],
            t["target_text"],
            f"{t['achieved']:.4f}",
            "yes" if t["met"] else "no",
        ]
    assert html.escape(report["verdict"], quote=False) in page

    fixture = json.loads(
        (console_root / "reviews/runs/reviews/eval/report.json").read_text(encoding="utf-8")
    )
    page = shared.get("/evaluation/reviews").text
    m = fixture["margin"]
    assert f"Δ {m['metric']} {m['delta']:+.4f}" in page
    assert f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]" in page
    assert f"{m['p_value']:.3g} (McNemar, n = {m['n']})" in page
    assert 'id="targets-none"' in page
    strongest = fixture["strongest_baseline"]["name"]
    cells = _cells(_row(page, "data-metric", m["metric"]))
    assert cells[1:3] == [
        f"{fixture['model']['metrics'][m['metric']]:.4f}",
        f"{fixture['baselines'][strongest]['metrics'][m['metric']]:.4f}",
    ]
    pair = fixture["error_analysis"]["confusion_pairs"][0]
    assert f'data-gold="{pair["gold"]}" data-pred="{pair["pred"]}"' in page
    assert '<iframe id="eval-report-frame"' in page and 'src="/evaluation/report/reviews"' in page


def test_report_file_is_served_and_confined(shared, console_root):
    r = shared.get("/evaluation/report/reviews")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.content == (console_root / "reviews/runs/reviews/eval/report.html").read_bytes()
    assert r.headers["content-security-policy"].startswith("sandbox")
    for attempt in (
        "/evaluation/report/..%2F..%2F..%2Fetc%2Fpasswd",
        "/evaluation/report/reviews%2F..%2F..%2F..%2Fetc",
        "/evaluation/report/%2e%2e/%2e%2e/etc/passwd",
    ):
        refused = shared.get(attempt)
        assert 400 <= refused.status_code < 500, attempt
        assert "root:" not in refused.text
