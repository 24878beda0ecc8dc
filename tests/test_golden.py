"""Golden runs: the three tasks' examples, shortened, must train and score exactly as they did
when tests/golden/*.json were written — the first training losses, the headline metrics, the
keys of every manifest and of the report, and the files in the run folder.

Only the public surface is used (the `verticalize` CLI, the YAML, the run folder), so the
tests hold across a refactor that moves modules. A failure here means behaviour changed: fix
the code, or, if the change is intended, regenerate with tests/golden/regenerate.py."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_cli, shortened

GOLDEN_DIR = Path(__file__).parent / "golden"
FIRST_STEPS = 8  # training losses compared per metrics.jsonl
# CPU torch with a seed repeats itself; the room is for another CPU's kernels, not for drift
REL, ABS = 1e-3, 1e-4
STAGES = ("data", "train", "eval")
# run-folder parts whose names carry steps, times, hosts or process ids
VARYING_DIRS = {"checkpoints", "tb"}
NO_EXTRAS = (  # classification's costly eval extras, off
    "eval.cv.enabled=false",
    "eval.robustness.enabled=false",
    "eval.adversarial.fgsm.enabled=false",
    "eval.adversarial.substitution.enabled=false",
)


@dataclass(frozen=True)
class GoldenTask:
    name: str
    example: str  # folder under examples/
    sets: tuple[str, ...]  # --set overrides that shorten the example
    metrics: tuple[str, ...]  # dotted paths into eval/report.json


TASKS = {
    t.name: t
    for t in (
        GoldenTask(
            "classification",
            "drug-reviews",
            # the README test's slice, in batches of 8 for 7 logged steps
            (
                "data.sources.0.sample=40",
                "data.sources.1.sample=30",
                "train.epochs=1",
                "model.max_length=32",
                "train.batch_size=8",
                # the golden numbers predate the example's imbalance settings
                "train.class_weights=none",
                "train.tune_thresholds=false",
                *NO_EXTRAS,
            ),
            (
                "model.metrics.accuracy",
                "model.metrics.macro_f1",
                "model.metrics.weighted_f1",
                "model.metrics.ece",  # moves with the probabilities even when argmax does not
                "baselines.tfidf_lr.metrics.macro_f1",
                "baselines.lightgbm.metrics.macro_f1",
                "train.steps",
            ),
        ),
        GoldenTask(
            "ner",
            "tweets-ner",
            # test_ner_pipeline's slice; batches of 8 and a faster head so that it predicts spans
            (
                "data.sources.0.sample=400",
                "train.epochs=2",
                "model.max_length=64",
                "train.batch_size=8",
                "ner.head_lr=1e-2",
            ),
            (
                "model.metrics.entity_f1_micro",
                "model.metrics.entity_f1_macro",
                "model.metrics.entity_precision_micro",
                "model.metrics.entity_recall_micro",
                "model.metrics.token_accuracy",
                "model.metrics.n_gold",
                "model.metrics.n_pred",
                "model.metrics.n_correct",
                "baselines.feature_crf.metrics.entity_f1_micro",
                "train.steps",
            ),
        ),
        GoldenTask(
            "generation",
            "drug-assistant",
            # test_generation_pipeline's SMALL slice
            (
                "data.sources.0.sample=6",
                "data.sources.1.sample=24",
                "model.max_length=160",
                "generation.block_size=512",
                "generation.eval_generations=4",
                "generation.report_samples=3",
                "generation.max_new_tokens=8",
                "train.batch_size=1",
                "train.grad_accum_steps=1",
                "train.eval_batch_size=8",
            ),
            tuple(
                f"{block}.metrics.{m}"
                for block in ("model", "base_model")
                for m in (
                    "loss",
                    "perplexity",
                    "perplexity_answers",
                    "perplexity_text",
                    "tokens_scored",
                    "bleu",
                    "rouge_1",
                    "rouge_2",
                    "rouge_l",
                    "exact_match",
                    "n",
                )
            )
            + ("train.steps",),
        ),
    )
}


def run_task(task: GoldenTask, run_dir: Path) -> None:
    """data → train → eval of the shortened example through the CLI, into `run_dir`."""
    example = ROOT / "examples" / task.example / "verticalize.yaml"
    for stage in STAGES:
        r = run_cli(stage, str(example), *shortened(run_dir, *task.sets))
        assert r.returncode == 0, f"verticalize {stage} failed:\n{r.stdout}\n{r.stderr[-4000:]}"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _dig(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def observe(task: GoldenTask, run_dir: Path) -> dict:
    """What a golden file pins, read from a finished run folder."""
    report = _read(run_dir / "eval/report.json")
    losses = {}
    for path in sorted(run_dir.glob("train/**/metrics.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        train = [r["loss"] for r in rows if r["event"] == "train"]
        losses[path.relative_to(run_dir).as_posix()] = train[:FIRST_STEPS]
    keys = {f"{s}/manifest.json": sorted(_read(run_dir / s / "manifest.json")) for s in STAGES}
    keys["eval/report.json"] = sorted(report)
    keys["eval/report.json:model.metrics"] = sorted(report["model"]["metrics"])
    keys["eval/report.json:baselines"] = sorted(report["baselines"])
    files = sorted(
        p.relative_to(run_dir).as_posix()
        for p in run_dir.rglob("*")
        if p.is_file() and not VARYING_DIRS & set(p.relative_to(run_dir).parts)
    )
    return {
        "losses": losses,
        "metrics": {m: _dig(report, m) for m in task.metrics},
        "splits": _read(run_dir / "data/manifest.json")["splits"],
        "keys": keys,
        "files": files,
    }


def golden_path(task: GoldenTask) -> Path:
    return GOLDEN_DIR / f"{task.name}.json"


@dataclass
class GoldenRun:
    task: GoldenTask
    seen: dict
    golden: dict


@pytest.fixture(
    scope="module",
    params=[
        "classification",
        "ner",
        # ~85 s on 2 idle cores (loading and merging SmolLM2 dominate), minutes when busy
        pytest.param("generation", marks=pytest.mark.slow),
    ],
)
def golden_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One shortened run per task, shared by every assertion about it."""
    task = TASKS[request.param]
    golden = _read(golden_path(task))
    run_dir = tmp_path_factory.mktemp(task.name) / "run"
    run_task(task, run_dir)
    return GoldenRun(task, observe(task, run_dir), golden)


def test_golden_file_matches_the_settings_under_test(golden_run: GoldenRun):
    task, golden = golden_run.task, golden_run.golden
    made_with = (golden["example"], golden["sets"], golden["first_steps"])
    assert made_with == (task.example, list(task.sets), FIRST_STEPS), (
        "the golden file was made with other settings: run tests/golden/regenerate.py"
    )
    assert sorted(golden["metrics"]) == sorted(task.metrics)


def test_first_training_losses_match_golden(golden_run: GoldenRun):
    seen, golden = golden_run.seen["losses"], golden_run.golden["losses"]
    assert sorted(seen) == sorted(golden)  # the same metrics.jsonl files (generation: per stage)
    for name, losses in golden.items():
        assert seen[name] == pytest.approx(losses, rel=REL, abs=ABS), name


def test_headline_metrics_match_golden(golden_run: GoldenRun):
    seen, golden = golden_run.seen, golden_run.golden
    assert seen["splits"] == golden["splits"]
    assert seen["metrics"] == pytest.approx(golden["metrics"], rel=REL, abs=ABS)


def test_manifest_and_report_keys_match_golden(golden_run: GoldenRun):
    seen, golden = golden_run.seen["keys"], golden_run.golden["keys"]
    assert sorted(seen) == sorted(golden)
    for name, keys in golden.items():
        missing, extra = set(keys) - set(seen[name]), set(seen[name]) - set(keys)
        assert not missing and not extra, f"{name}: missing {missing}, new {extra}"


def test_run_folder_files_match_golden(golden_run: GoldenRun):
    seen, golden = set(golden_run.seen["files"]), set(golden_run.golden["files"])
    assert seen == golden, f"missing {sorted(golden - seen)}, new {sorted(seen - golden)}"
