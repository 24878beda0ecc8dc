"""The README's first example, shortened: `verticalize run` with the whole evaluation suite
(baselines, CV, robustness, attacks) records every stage's and every eval step's wall time
in report.json, and the cheaper CV settings do what they say: only the first n folds, and
a fold stops once its validation slice stops improving."""

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, shortened

EXAMPLE = ROOT / "examples" / "drug-reviews" / "verticalize.yaml"
SMALL = (
    "data.sources.0.sample=40",
    "data.sources.1.sample=30",
    "train.epochs=1",
    "model.max_length=32",
    "train.batch_size=8",
    "eval.robustness.enabled=true",
    "eval.adversarial.fgsm.enabled=true",
    "eval.adversarial.substitution.enabled=true",
    "eval.adversarial.substitution.n=3",
    "eval.cv.enabled=true",
    "eval.cv.max_length=32",
    "eval.cv.folds=2",
    "eval.cv.epochs=4",
    # an LR this small leaves the fold's validation metric where it was after epoch 1, so
    # patience 1 must stop every fold after its second epoch
    "eval.cv.lr=1e-9",
    "eval.cv.patience=1",
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    run_dir = tmp_path_factory.mktemp("first-run") / "run"
    r = run_cli("run", str(EXAMPLE), *shortened(run_dir, *SMALL), cwd=run_dir.parent)
    assert r.returncode == 0, f"verticalize run failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    report = json.loads((run_dir / "eval" / "report.json").read_text("utf-8"))
    return run_dir, report, r.stderr


def test_report_timing_has_every_stage_and_eval_step(small_run):
    _, report, _ = small_run
    timing = report["timing"]
    assert set(timing["stages"]) == {"data", "train", "eval", "export", "registry"}
    assert all(v is not None and v >= 0 for v in timing["stages"].values())
    assert timing["pipeline_s"] == pytest.approx(sum(timing["stages"].values()), abs=0.05)
    steps = timing["eval_steps"]
    for step in (
        "predict_test",
        "baseline_tfidf_lr",
        "baseline_lightgbm",
        "cv",
        "robustness",
        "attack_fgsm",
        "attack_substitution",
    ):
        assert step in steps and steps[step] >= 0, step
    # the eval stage's own steps fit inside its wall time
    assert sum(steps.values()) <= timing["stages"]["eval"] + 0.5


def test_every_stage_prints_its_wall_time(small_run):
    _, _, stderr = small_run
    for stage in ("data", "train", "eval", "export", "registry"):
        assert f"{stage}: done in " in stderr, stage
    assert "eval: cv took " in stderr and "eval: baseline_lightgbm took " in stderr


def test_cv_runs_only_the_first_folds_and_stops_them_early(small_run):
    _, report, _ = small_run
    cv = report["cv"]
    assert (cv["k"], cv["folds_run"], cv["epochs"], cv["patience"]) == (5, 2, 4, 1)
    assert [f["fold"] for f in cv["folds"]] == [0, 1]
    assert len(cv["macro_f1"]["values"]) == 2
    for fold in cv["folds"]:
        assert fold["stopped_early"] is True
        assert fold["epochs_run"] == 2  # of 4: stopped after the first epoch without gain


def test_cv_folds_beyond_the_data_are_refused_before_any_work(small_run):
    run_dir, _, _ = small_run
    r = run_cli("eval", str(EXAMPLE), *shortened(run_dir, *SMALL, "eval.cv.folds=9"))
    assert r.returncode != 0
    assert "eval.cv.folds is 9" in r.stderr and "at most 5" in r.stderr
    assert "baseline" not in r.stderr  # refused before the baselines were fitted
