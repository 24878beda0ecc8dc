"""E6/P2: calibration, and the classification report page rendered in a real headless Chromium:
every plot is present, visible and drawn, nothing is fetched from outside, targets pass/fail."""

from __future__ import annotations

import random
import re
import shutil
import time

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from verticalize.evaluate.calibration import calibration
from verticalize.evaluate.report import write_report
from verticalize.metrics import classification_metrics
from verticalize.tasks.classification.report import render_classification

LABELS = ["negative", "neutral", "positive"]
PLOTS = ["plot-loss", "plot-confusion", "plot-f1", "plot-robustness", "plot-reliability"]
INSTALL = (
    "the report render test needs Chromium and the playwright package: "
    "`apt-get install -y --no-install-recommends chromium` (scripts/setup.sh does it when run "
    "as root; CI installs it) and `pip install playwright==1.65.2` (do not run "
    "`playwright install`: the test drives the system Chromium)"
)


# --- calibration -------------------------------------------------------------------------------


def test_calibration_matches_a_hand_computation():
    gold = ["a", "a", "b", "b", "a", "b"]
    pred = ["a", "b", "b", "b", "a", "a"]  # right, wrong, right, right, right, wrong
    conf = [0.35, 0.45, 0.5, 0.95, 0.92, 1.0]
    cal = calibration(gold, pred, conf, bins=4)
    # bins [0, .25] (.25, .5] (.5, .75] (.75, 1]; 0.5 sits on an inner edge: the lower bin
    assert [(b["low"], b["high"], b["count"]) for b in cal["bins"]] == [
        (0.0, 0.25, 0),
        (0.25, 0.5, 3),
        (0.5, 0.75, 0),
        (0.75, 1.0, 3),
    ]
    b1, b3 = cal["bins"][1], cal["bins"][3]
    assert b1["confidence"] == pytest.approx((0.35 + 0.45 + 0.5) / 3)
    assert b1["accuracy"] == pytest.approx(2 / 3)
    assert b3["confidence"] == pytest.approx((0.95 + 0.92 + 1.0) / 3)
    assert b3["accuracy"] == pytest.approx(2 / 3)
    assert cal["bins"][0]["accuracy"] is None and cal["bins"][0]["confidence"] is None
    gap1, gap3 = abs(2 / 3 - 1.3 / 3), abs(2 / 3 - 2.87 / 3)
    assert cal["ece"] == pytest.approx(3 / 6 * gap1 + 3 / 6 * gap3)
    assert cal["mce"] == pytest.approx(max(gap1, gap3))
    assert cal["n"] == 6


def test_calibration_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(3)
    n = 500
    conf = np.round(rng.uniform(1 / 3, 1.0, n), 2)  # rounded: many values on the bin edges
    conf[:5] = [1.0, 0.5, 0.7, 0.4, 0.9]
    correct = rng.uniform(size=n) < conf**1.5  # over-confident
    gold = [LABELS[i % 3] for i in range(n)]
    pred = [
        g if c else LABELS[(LABELS.index(g) + 1) % 3] for g, c in zip(gold, correct, strict=True)
    ]
    cal = calibration(gold, pred, conf.tolist(), bins=10)
    prob_true, prob_pred = calibration_curve(
        correct.astype(int), conf, n_bins=10, strategy="uniform"
    )
    full = [b for b in cal["bins"] if b["count"]]
    assert np.allclose([b["accuracy"] for b in full], prob_true)
    assert np.allclose([b["confidence"] for b in full], prob_pred)
    assert sum(b["count"] for b in cal["bins"]) == n
    counts = np.array([b["count"] for b in full])
    gaps = np.abs(prob_true - prob_pred)
    assert cal["ece"] == pytest.approx(float((counts / n * gaps).sum()))
    assert cal["mce"] == pytest.approx(float(gaps.max()))
    assert cal["ece"] > 0.02  # the simulated over-confidence shows


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        calibration(["a"], ["a", "b"], [0.9])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration(["a"], ["a"], [1.2])
    empty = calibration([], [], [])
    assert empty["n"] == 0 and empty["ece"] == 0.0 and all(b["count"] == 0 for b in empty["bins"])


# --- the report page ---------------------------------------------------------------------------


def _stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def classification_report() -> tuple[dict, list[dict]]:
    """A realistic classification report.json (3 classes, 2 baselines, robustness, attacks, CV,
    calibration, error analysis) and a short training history."""
    rng = random.Random(0)
    gold = [LABELS[i % 3] for i in range(120)]
    pred, conf = [], []
    for g in gold:
        right = rng.random() < 0.7
        pred.append(g if right else rng.choice([x for x in LABELS if x != g]))
        conf.append(round(rng.uniform(0.55, 0.99) if right else rng.uniform(0.34, 0.8), 3))
    metrics = classification_metrics(gold, pred, LABELS)
    metrics["latency_ms_per_example"] = 1.7
    metrics["calibration"] = calibration(gold, pred, conf)

    def baseline(acc: float, description: str) -> dict:
        b_pred = [g if rng.random() < acc else rng.choice(LABELS) for g in gold]
        return {
            "name": description,
            "description": description,
            "metrics": classification_metrics(gold, b_pred, LABELS),
            "fit_seconds": 0.4,
        }

    cv_vals = {k: [0.61, 0.64, 0.58, 0.66, 0.6] for k in ("macro_f1", "accuracy", "weighted_f1")}
    report = {
        "task": "classification",
        "name": "render-test",
        "domain": "medicine",
        "model": {"path": "run/model", "metrics": metrics},
        "baselines": {
            "tfidf_lr": baseline(0.55, "TF-IDF + logistic regression"),
            "lightgbm": baseline(0.5, "TF-IDF + LightGBM"),
        },
        "verdict": "The fine-tuned model beats the tfidf_lr baseline on macro_f1.",
        "summary_metrics": [
            "accuracy",
            "macro_f1",
            "weighted_f1",
            "macro_precision",
            "macro_recall",
        ],
        "robustness": [
            {
                "noise": kind,
                "rate": 0.1,
                "macro_f1": metrics["macro_f1"] - d,
                "accuracy": metrics["accuracy"] - d / 2,
                "drop": d,
                "drops": {"macro_f1": d, "accuracy": d / 2},
                "changed_share": 0.1,
            }
            for kind, d in (("swap", 0.05), ("delete", 0.08), ("keyboard", 0.03))
        ],
        "adversarial": {
            "fgsm": {
                "epsilon": 0.05,
                "accuracy": 0.41,
                "macro_f1": 0.38,
                "clean_accuracy": metrics["accuracy"],
                "clean_macro_f1": metrics["macro_f1"],
                "success_rate": 0.42,
                "n": 120,
            }
        },
        "cv": {
            "k": 5,
            "epochs": 2,
            "n": 600,
            **{k: _stats(v) for k, v in cv_vals.items()},
            "macro_precision": _stats([0.6, 0.62, 0.59, 0.65, 0.61]),
            "macro_recall": _stats([0.6, 0.63, 0.57, 0.66, 0.6]),
            "per_class_f1": {lab: _stats([0.5, 0.6, 0.55, 0.62, 0.58]) for lab in LABELS},
            "seconds": 1,
        },
        "error_analysis": {
            "confusion_pairs": [
                {
                    "gold": "neutral",
                    "pred": "positive",
                    "count": 9,
                    "examples": [
                        {
                            "id": "r17",
                            "text": "It was okay <b>not</b> great.",
                            "confidence": 0.71,
                            "gold_prob": 0.2,
                        },
                        {
                            "id": "r40",
                            "text": "Some relief, some nausea.",
                            "confidence": 0.55,
                            "gold_prob": 0.3,
                        },
                    ],
                },
                {
                    "gold": "negative",
                    "pred": "neutral",
                    "count": 4,
                    "examples": [
                        {
                            "id": "r3",
                            "text": "Did nothing for me.",
                            "confidence": 0.49,
                            "gold_prob": 0.4,
                        }
                    ],
                },
            ],
            "low_confidence_correct": [
                {"id": "r8", "text": "Works, I think.", "label": "positive", "confidence": 0.36}
            ],
            "n_errors": sum(g != p for g, p in zip(gold, pred, strict=True)),
            "n": len(gold),
            "relabel": {
                "file": "/runs/x/eval/relabel_labelstudio.json",
                "config": "/runs/x/eval/relabel_config.xml",
                "n": 14,
            },
        },
        "targets": [
            {
                "metric": "macro_f1",
                "target": 0.99,
                "achieved": metrics["macro_f1"],
                "met": False,
                "direction": "max",
            },
            {
                "metric": "accuracy",
                "target": 0.1,
                "achieved": metrics["accuracy"],
                "met": True,
                "direction": "max",
            },
            {
                "metric": "latency_ms_per_example",
                "target": 50.0,
                "achieved": 1.7,
                "met": True,
                "direction": "min",
            },
        ],
        "test_size": len(gold),
        "train": {
            "base_model": "all-MiniLM-L6-v2",
            "method": "lora",
            "parameters": 22_700_000,
            "trainable_parameters": 150_000,
            "steps": 40,
            "epochs_run": 2,
            "best_metric": 0.64,
            "best_step": 40,
            "stopped_early": False,
        },
        "data": {"in": 800, "out": 790, "dropped": {}, "sources": ["drugs.tsv"], "quarantined": 10},
        "timing": {
            "data_s": 1.2,
            "train_s": 30.5,
            "eval_s": 4.0,
            "inference_s": 0.2,
            "total_s": 35.7,
        },
        "verticalize_version": "0.1.0",
    }
    history = [{"event": "train", "step": s, "loss": 1.1 - 0.02 * s} for s in range(1, 41)]
    history += [{"event": "eval", "step": s, "val_loss": 1.0 - 0.01 * s} for s in (10, 20, 30, 40)]
    return report, history


def test_report_html_holds_every_plot_and_section(tmp_path):
    """Static checks, no browser: ids, titles, sections, no URL anywhere in the page."""
    report, history = classification_report()
    _, html_path = write_report(report, history, tmp_path, render_classification)
    page = html_path.read_text(encoding="utf-8")
    for plot in PLOTS:
        assert page.count(f'id="{plot}"') == 1, plot
    svgs = re.findall(r"<svg[^>]*>\s*<title>", page)
    assert len(svgs) == page.count("<svg") == len(PLOTS)
    assert all('class="plot"' in s for s in svgs)
    assert "http" not in page and "src=" not in page and "<script" not in page
    assert 'id="confusion"' in page and 'id="cv"' in page and 'id="targets"' in page
    assert "Error analysis" in page and ">relabel_labelstudio.json<" in page
    assert "format: labelstudio" in page and "p(gold)" in page
    assert "relabel_config.xml" in page and "&lt;b&gt;not&lt;/b&gt;" in page  # texts escaped
    assert "ECE" in page and "1 of 3" not in page and "2 of 3 target(s)" in page


def test_report_html_sensitive_error_analysis(tmp_path):
    """An encrypted test split: no texts in the report, no Label Studio file to point at."""
    report, history = classification_report()
    ea = report["error_analysis"]
    for x in ea["low_confidence_correct"] + [
        e for p in ea["confusion_pairs"] for e in p["examples"]
    ]:
        x["text"] = None
    ea["relabel"] = {"file": None, "config": None, "n": 0, "skipped": "data.sensitive lists test"}
    _, html_path = write_report(report, history, tmp_path, render_classification)
    page = html_path.read_text(encoding="utf-8")
    assert "text withheld" in page and "Did nothing" not in page and "None" not in page
    assert "No Label Studio file written (data.sensitive lists test)" in page
    assert "format: labelstudio" not in page


def test_report_html_leaves_out_optional_plots(tmp_path):
    report, history = classification_report()
    for key in ("robustness", "adversarial", "error_analysis", "cv"):
        del report[key]
    del report["model"]["metrics"]["calibration"]
    _, html_path = write_report(report, history, tmp_path, render_classification)
    page = html_path.read_text(encoding="utf-8")
    assert 'id="plot-robustness"' not in page and 'id="plot-reliability"' not in page
    assert "Error analysis" not in page and 'id="cv"' not in page
    assert all(f'id="{p}"' in page for p in ("plot-loss", "plot-confusion", "plot-f1"))


def _browser_or_fail(p):
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail(f"Chromium is not on PATH; {INSTALL}")
    # root in a container: Chromium's sandbox cannot start, so --no-sandbox
    return p.chromium.launch(
        executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
    )


def test_report_renders_in_headless_chromium(tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the playwright package is missing; {INSTALL}")
    report, history = classification_report()
    _, html_path = write_report(report, history, tmp_path, render_classification)
    url = html_path.resolve().as_uri()
    started = time.perf_counter()
    with sync_playwright() as p:
        browser = _browser_or_fail(p)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            requests, failed, errors = [], [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            response = page.goto(url, wait_until="load")
            assert response is not None and response.ok
            assert page.title() == "verticalize report — render-test"

            # self-contained: the page itself is the only thing loaded, nothing failed
            assert requests == [url], requests
            assert failed == [] and errors == []

            for plot in PLOTS:
                svg = page.locator(f"svg.plot#{plot}")
                assert svg.count() == 1, plot
                assert svg.is_visible(), plot
                box = svg.bounding_box()
                assert box and box["width"] > 50 and box["height"] > 50, (plot, box)
                assert svg.locator("title").first.text_content().strip(), plot
                shapes = svg.locator("rect, polyline, path, line").count()
                assert shapes > 0, plot
                # the drawing has extent in the browser's layout, not just tags in the file
                drawn = svg.evaluate(
                    "s => [...s.querySelectorAll('rect, polyline, path')]"
                    ".filter(e => { const b = e.getBBox(); return b.width > 0 && b.height > 0; })"
                    ".length"
                )
                assert drawn > 0, plot
                svg.screenshot(path=str(tmp_path / f"{plot}.png"))
                assert (tmp_path / f"{plot}.png").stat().st_size > 500, plot

            # what each plot shows
            loss = page.locator("#plot-loss polyline")
            assert loss.count() == 2  # train and validation loss
            assert page.locator("#plot-confusion rect.cell").count() == 9
            matrix = report["model"]["metrics"]["confusion_matrix"]["matrix"]
            cell_texts = page.locator("#plot-confusion text").all_text_contents()
            assert all(str(v) in cell_texts for row in matrix for v in row)
            cal = report["model"]["metrics"]["calibration"]
            assert page.locator("#plot-reliability rect.bin").count() == sum(
                1 for b in cal["bins"] if b["count"]
            )
            assert (
                f"ECE {cal['ece']:.4f}" in page.locator("#plot-reliability > title").text_content()
            )
            f1_bars = page.locator("#plot-f1 rect").count()
            assert f1_bars == 3 * 3  # 3 classes x (model, tfidf_lr, lightgbm)
            robust = page.locator("#plot-robustness rect").count()
            assert robust == (1 + 3 + 1) * 2  # clean, 3 noise kinds, FGSM x 2 metrics

            # the targets from the YAML, pass / fail
            status = page.locator("#targets td.status").all_text_contents()
            assert [s.split()[0] for s in status] == ["fail", "pass", "pass"]
            assert page.locator("#targets td.missed").count() == 1
            assert page.locator("#targets td.met").count() == 2

            # the other sections
            assert page.locator("#cv").is_visible() and page.locator("#confusion").is_visible()
            assert page.locator("table.confusion-pair").count() == 2
            assert page.locator("#low-confidence").is_visible()
            assert "format: labelstudio" in page.locator("#relabel").text_content()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert time.perf_counter() - started < 120
