"""T8: `verticalize tune` — space validation, grid enumeration, results files, best.yaml."""

import csv
import json
import math

import pytest
import yaml
from conftest import run_cli

from verticalize import api
from verticalize.config import load_config
from verticalize.errors import ConfigError, TrainingError
from verticalize.tune import _source, _Study, check_space, edited_yaml

SPACE = """
tune:
  sampler: {sampler}
  trials: {trials}
  space:
{space}
"""


def _project(csv_project, space: str, sampler="tpe", trials=4, extra="", data_extra=""):
    indented = "\n".join("    " + line for line in space.strip("\n").splitlines())
    body = SPACE.format(sampler=sampler, trials=trials, space=indented)
    return csv_project(extra + body, data_extra=data_extra)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _line_of(path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# ---------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    "space, sampler, needles",
    [
        (
            "train.lrr: {type: float, low: 1.0e-5, high: 1.0e-3}",
            "tpe",
            ["tune.space: 'train.lrr' is not a config field", "did you mean 'train.lr'"],
        ),
        (
            "optimiser.lr: {type: float, low: 1.0e-5, high: 1.0e-3}",
            "tpe",
            ["'optimiser' is not a key of the top level", "keys there:"],
        ),
        (
            "train.epochs: {type: float, low: 1, high: 3}",
            "tpe",
            ["train.epochs: type: float does not fit", "Fix: use type: int"],
        ),
        (
            "train.lr: {type: float, low: 0, high: 1.0e-3}",
            "random",
            ["tune.space.train.lr: low 0.0 is not a valid value of train.lr", "greater than 0"],
        ),
        (
            "model.method: {type: categorical, choices: [full, qlora]}",
            "tpe",
            ["choices 'qlora' is not a valid value of model.method", "'lora'"],
        ),
        (
            "train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}",
            "grid",
            ["needs a finite list of values", "add values:"],
        ),
        (
            "data.sources.3.sample: {type: int, low: 5, high: 20}",
            "tpe",
            ["data.sources is a list of 1 entries", "use an index from 0 to 0"],
        ),
        (
            "train.lr.x: {values: [1, 2]}",
            "tpe",
            ["train.lr is a value, not a section"],
        ),
        (
            "tune.trials: {values: [1, 2]}",
            "tpe",
            ["'tune.trials' cannot be tuned"],
        ),
    ],
)
def test_space_errors_name_field_line_and_fix(csv_project, space, sampler, needles):
    cfg = _project(csv_project, space, sampler)
    with pytest.raises(ConfigError) as err:
        api.tune(cfg)
    msg = _flat(str(err.value))
    field = space.split(":")[0]
    assert f"verticalize.yaml:{_line_of(cfg, field + ':')}" in msg, msg
    assert "Fix:" in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


@pytest.mark.parametrize(
    "space, needles",
    [
        (
            "train.lr: {type: float, low: 1.0e-3, high: 1.0e-5}",
            ["tune.space.train.lr", "low (0.001) must be below high (1e-05)", "swap them"],
        ),
        ("train.lr: {typ: float, low: 1, high: 2}", ["unknown key 'typ'", "did you mean 'type'"]),
        ("train.lr: {type: float, low: 1.0e-5}", ["needs both low and high"]),
        ("train.epochs: {type: int, low: 1, high: 2.5}", ["type: int needs a whole high"]),
        ("train.lr: {type: float, low: 0, high: 1, log: true}", ["log: true needs low > 0"]),
        ("model.method: {type: categorical, choices: []}", ["needs a non-empty list"]),
        (
            "train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, values: [0.1]}",
            ["values [0.1] lie outside [low, high]"],
        ),
        ("model.method: {type: categorical, low: 1, high: 2}", ["need type: float or int"]),
    ],
)
def test_search_entry_schema_errors_at_load(csv_project, space, needles):
    """A malformed entry is a config error for every command, with file:line."""
    cfg = _project(csv_project, space)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    msg = _flat(str(err.value))
    assert f"verticalize.yaml:{_line_of(cfg, space.split(':')[0] + ':')}" in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_empty_space_and_bad_metric_and_sampler(csv_project, tmp_path):
    cfg = csv_project("")
    with pytest.raises(ConfigError, match=r"tune.space is empty.*Fix"):
        api.tune(cfg)
    cfg = _project(csv_project, "train.lr: {values: [1.0e-4]}", extra="")
    with pytest.raises(ConfigError, match="unknown sampler. Fix: use grid, random or tpe"):
        api.tune(cfg, sampler="bayes")
    text = cfg.read_text().replace("  sampler: tpe", "  sampler: tpe\n  metric: f1:maybe")
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        api.tune(cfg)
    msg = str(err.value)
    line = _line_of(cfg, "metric: f1:maybe")
    assert f"verticalize.yaml:{line}: tune.metric" in msg and "'maybe'" in msg and "Fix" in msg
    cfg.write_text(text.replace("f1:maybe", "latency_ms_per_example"))
    with pytest.raises(ConfigError, match="validation split"):
        api.tune(cfg)


def test_cli_error_is_one_message_with_exit_code_2(csv_project):
    cfg = _project(csv_project, "train.lrr: {type: float, low: 1.0e-5, high: 1.0e-3}")
    r = run_cli("tune", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out
    assert "did you mean 'train.lr'" in _flat(out)


# ---------------------------------------------------------------- grid enumeration


def test_grid_points_and_size(csv_project):
    cfg = _project(
        csv_project,
        """
train.epochs: {type: int, low: 1, high: 3}
train.batch_size: {type: int, low: 4, high: 16, step: 4}
model.method: {type: categorical, choices: [full, lora, full]}
train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true, values: [1.0e-5, 1.0e-4]}
train.warmup_ratio: {type: float, low: 0.0, high: 0.2, step: 0.1}
data.split: {values: [{validation: 0.1, test: 0.2}, {validation: 0.2, test: 0.2}]}
""",
        sampler="grid",
    )
    params = check_space(_source(cfg, None), "grid")
    points = {p.name: p.points for p in params}
    assert points == {
        "train.epochs": [1, 2, 3],
        "train.batch_size": [4, 8, 12, 16],
        "model.method": ["full", "lora"],  # duplicates dropped
        "train.lr": [1e-5, 1e-4],
        "train.warmup_ratio": [0.0, 0.1, 0.2],
        "data.split": [{"validation": 0.1, "test": 0.2}, {"validation": 0.2, "test": 0.2}],
    }
    assert math.prod(len(v) for v in points.values()) == 3 * 4 * 2 * 2 * 3 * 2


@pytest.fixture
def fake_training(monkeypatch):
    """Trials score a formula of their params instead of training (the data stage is real)."""
    seen = []

    def run_trial(self, number, params):
        seen.append(params)
        trial_cfg = self.trial_raw(params)
        if params.get("model.method") == "freeze" and params.get("train.epochs") == 2:
            raise ConfigError("freeze does not go with 2 epochs (a made-up rule)")
        root = self.dir / f"trial-{number}"
        (root / "model").mkdir(parents=True, exist_ok=True)
        method = (trial_cfg.get("model") or {}).get("method")
        value = trial_cfg["train"]["epochs"] * 0.1 + (method == "lora")
        return value, False, root

    monkeypatch.setattr(_Study, "run_trial", run_trial)
    return seen


def test_grid_runs_every_combination_once_and_records_failures(
    csv_project, tmp_path, fake_training
):
    cfg = _project(
        csv_project,
        """
train.epochs: {type: int, low: 1, high: 2}
model.method: {type: categorical, choices: [full, lora, freeze]}
""",
        sampler="grid",
        trials=50,
        extra="# the project\nmodel:\n  method: full  # the default\ntrain:\n  epochs: 3\n",
    )
    run = tmp_path / "run"
    summary = api.tune(cfg, run_dir=run)
    combos = {(p["train.epochs"], p["model.method"]) for p in fake_training}
    assert len(fake_training) == 6 and len(combos) == 6  # the grid, each point once
    assert summary["trials"] == 6 and summary["grid_size"] == 6
    assert summary["failed"] == 1 and summary["completed"] == 5
    assert summary["metric"] == "macro_f1" and summary["direction"] == "maximize"
    assert summary["split"] == "validation"
    assert summary["best"]["params"] == {"train.epochs": 2, "model.method": "lora"}
    assert summary["best"]["value"] == pytest.approx(1.2)

    tune_dir = run / "tune"
    rows = [json.loads(x) for x in (tune_dir / "trials.jsonl").read_text().splitlines()]
    assert [r["trial"] for r in rows] == list(range(6))
    failed = [r for r in rows if r["state"] == "failed"]
    assert len(failed) == 1 and "made-up rule" in failed[0]["error"]
    assert failed[0]["value"] is None
    table = list(csv.DictReader((tune_dir / "results.csv").open()))
    assert len(table) == 6 and {"trial", "state", "macro_f1", "seconds"} <= set(table[0])
    assert {"train.epochs", "model.method", "error"} <= set(table[0])
    assert json.loads((tune_dir / "summary.json").read_text())["best"] == summary["best"]

    # only the best trial keeps its model
    kept = sorted(p.parent.name for p in tune_dir.glob("trial-*/model"))
    assert kept == [f"trial-{summary['best']['trial']}"]

    # best.yaml: loads, carries the best params, keeps the comments, points at the data
    best_yaml = tune_dir / "best.yaml"
    assert summary["best_config"] == str(best_yaml)
    best = load_config(best_yaml)
    assert best.model.method == "lora" and best.train.epochs == 2
    text = best_yaml.read_text()
    assert "# the project" in text and "# the default" in text
    assert str(cfg.parent / "data.csv") in text


def test_budget_caps_trials_and_random_is_seeded(csv_project, tmp_path, fake_training):
    cfg = _project(
        csv_project,
        "train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}\n"
        "train.epochs: {type: int, low: 1, high: 4}",
        sampler="random",
        trials=3,
    )
    first = api.tune(cfg, run_dir=tmp_path / "a")
    second = api.tune(cfg, run_dir=tmp_path / "b", trials=3)
    assert first["trials"] == 3
    assert [r["params"] for r in first["results"]] == [r["params"] for r in second["results"]]
    for r in first["results"]:
        assert 1e-5 <= r["params"]["train.lr"] <= 1e-3 and r["params"]["train.epochs"] in (
            1,
            2,
            3,
            4,
        )
    fewer = api.tune(cfg, run_dir=tmp_path / "a", trials=1)  # a rerun rewrites the files
    assert fewer["trials"] == 1
    assert len((tmp_path / "a/tune/trials.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "a/tune/trial-2").exists()


def test_all_trials_failing_is_an_error(csv_project, tmp_path, monkeypatch):
    def boom(self, number, params):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(_Study, "run_trial", boom)
    cfg = _project(csv_project, "train.epochs: {values: [1, 2]}", sampler="grid")
    with pytest.raises(TrainingError, match="all 2 trials failed.*RuntimeError: out of memory"):
        api.tune(cfg, run_dir=tmp_path / "run")
    rows = (tmp_path / "run/tune/trials.jsonl").read_text().splitlines()
    assert len(rows) == 2


def test_metric_other_than_early_stopping_replaces_it(csv_project, tmp_path, fake_training):
    cfg = _project(csv_project, "train.epochs: {values: [1, 2]}", sampler="grid")
    cfg.write_text(cfg.read_text().replace("  sampler: grid", "  sampler: grid\n  metric: loss"))
    summary = api.tune(cfg, run_dir=tmp_path / "run")
    assert summary["metric"] == "loss" and summary["direction"] == "minimize"
    assert summary["best"]["params"] == {"train.epochs": 1}  # the smaller made-up value
    best = load_config(tmp_path / "run/tune/best.yaml")
    assert best.train.early_stopping.metric == "loss" and best.train.epochs == 1


# ---------------------------------------------------------------- YAML edits


def test_edited_yaml_keeps_comments_and_falls_back():
    text = (
        "# top\nname: x  # name\ndata:\n  sources:\n    - path: a.csv  # file\n"
        "train:\n  epochs: 3  # keep\n  early_stopping: {metric: macro_f1, patience: 2}\n"
    )
    edits = [
        (("train", "epochs"), 1),
        (("train", "lr"), 1e-4),
        (("train", "early_stopping", "patience"), 5),
        (("data", "sources", "0", "path"), "/abs/a.csv"),
        (("model", "lora", "r"), 16),
    ]
    target = yaml.safe_load(text)
    target["train"].update(epochs=1, lr=1e-4)
    target["train"]["early_stopping"]["patience"] = 5
    target["data"]["sources"][0]["path"] = "/abs/a.csv"
    target["model"] = {"lora": {"r": 16}}
    out = edited_yaml(text, edits, target)
    assert yaml.safe_load(out) == target
    for comment in ("# top", "# name", "# file", "# keep"):
        assert comment in out
    # a value replacing a block section cannot be spliced: written afresh, still exact
    edits = [(("train",), {"epochs": 2})]
    target = {**yaml.safe_load(text), "train": {"epochs": 2}}
    out = edited_yaml(text, edits, target)
    assert yaml.safe_load(out) == target


# ---------------------------------------------------------------- real training


@pytest.mark.slow
def test_real_tune_random_then_grid(csv_project, tmp_path):
    rows = [
        (
            f"review {i}: {'great, works well' if i % 2 else 'awful, made me sick'}",
            "pos" if i % 2 else "neg",
        )
        for i in range(40)
    ]
    cfg = csv_project(
        "model:\n  max_length: 32\n  method: layer_reduction\n  layer_reduction: {keep: 2}\n"
        "train:\n  epochs: 1\n  batch_size: 8\n  tensorboard: false\n"
        "tune:\n  sampler: random\n  trials: 3\n  space:\n"
        "    train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true, "
        "values: [1.0e-4, 5.0e-4]}\n",
        rows=rows,
        data_extra="  split: {validation: 0.2, test: 0.2}\n",
    )
    run = tmp_path / "run"
    summary = api.tune(cfg, run_dir=run)
    assert summary["trials"] == 3 and summary["completed"] == 3
    values = [r["value"] for r in summary["results"]]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)
    lrs = [r["params"]["train.lr"] for r in summary["results"]]
    assert len(set(lrs)) == 3 and all(1e-5 <= lr <= 1e-3 for lr in lrs)
    best = summary["best"]
    assert best["value"] == max(values)
    for r in summary["results"]:  # the value is the trial's validation score
        m = json.loads((run / f"tune/trial-{r['trial']}/train/manifest.json").read_text())
        assert m["best_metric"]["macro_f1"] == r["value"]
    assert (run / f"tune/trial-{best['trial']}/model/config.json").is_file()
    assert len(list((run / "tune").glob("trial-*/model"))) == 1
    assert not (run / "train").exists()  # the base run's own stages are untouched
    best_cfg = load_config(run / "tune/best.yaml")
    assert best_cfg.train.lr == best["params"]["train.lr"]

    r = run_cli("tune", str(cfg), "--sampler", "grid", "--trials", "5", "--run-dir", str(run))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    summary = json.loads((run / "tune/summary.json").read_text())
    assert summary["sampler"] == "grid" and summary["trials"] == 2
    assert sorted(x["params"]["train.lr"] for x in summary["results"]) == [1e-4, 5e-4]
    assert "★" in out and "best.yaml" in out
    assert load_config(run / "tune/best.yaml").train.lr in (1e-4, 5e-4)
