"""MLflow tracking (T5) on a real sqlite store with real, tiny trainings: params, one metric
value per optimizer step, eval and test metrics, artifacts, resume into the same MLflow run,
the switches (train.mlflow, train.tensorboard, train.mlflow_uri) and `verticalize runs`."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import write
from mlflow import MlflowClient
from typer.testing import CliRunner

from verticalize import api, registry
from verticalize.cli import app
from verticalize.errors import RegistryError
from verticalize.mlflow_store import open_client
from verticalize.runfolder import RunFolder
from verticalize.train import tracking

# 40 records: 28 train → 4 optimizer steps of 8; evaluation (and a checkpoint) every 2 steps
PROJECT = """
name: tiny-tracked
domain: reviews
run_dir: {run_dir}
data:
  sources:
    - path: data.csv
  labels: [neg, pos]
model:
  max_length: 32
train:
  epochs: 1
  batch_size: 8
  eval_every: 2
  checkpoint_every: 2
  memory_guard: "off"  # the memory guard has its own tests
eval:
  baselines: [tfidf_lr]
export:
  onnx: false
"""
STEPS = [1, 2, 3, 4]


def make_project(folder: Path) -> tuple[Path, Path]:
    """(verticalize.yaml, its runs folder) in `folder`; the run is <runs>/tiny."""
    rows = [
        (f"review number {i} says it is {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg")
        for i in range(40)
    ]
    write(folder / "data.csv", "text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows))
    runs = folder / "runs"
    return write(folder / "verticalize.yaml", PROJECT.format(run_dir=runs / "tiny")), runs


def uri_of(db: Path) -> str:
    return f"sqlite:///{db}"


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run / "train/metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["event"] == "train"]


@pytest.fixture(autouse=True)
def _no_ambient_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    """One `verticalize run` (data → train → eval → export → registry) tracking into the
    default store, created by the run itself: <runs>/mlflow.db."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        config, runs = make_project(tmp_path_factory.mktemp("pipeline"))
        api.run(config)
    run = runs / "tiny"
    record = json.loads((run / "train/tracking.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    return {"config": config, "runs": runs, "run": run, "record": record, "client": client}


def test_run_tracks_params_every_step_and_eval_metrics(pipeline):
    client, run, record = pipeline["client"], pipeline["run"], pipeline["record"]
    assert record["tracking_uri"] == uri_of(pipeline["runs"] / "mlflow.db")
    assert record["experiment"] == "tiny-tracked"
    got = client.get_run(record["run_id"])
    assert got.info.status == "FINISHED"
    params = got.data.params
    assert float(params["train.lr"]) == 5e-5 and params["model.max_length"] == "32"
    assert int(params["model.trainable_parameters"]) > 1_000_000
    train_m = json.loads((run / "train/manifest.json").read_text())
    assert got.data.tags["train_fingerprint"] == train_m["fingerprint"]
    assert (got.data.tags["task"], got.data.tags["base_model"]) == (
        "classification",
        "all-MiniLM-L6-v2",
    )

    history = sorted(
        client.get_metric_history(record["run_id"], "train/loss"), key=lambda m: m.step
    )
    assert [(m.step, m.value) for m in history] == [(s, pytest.approx(v)) for s, v in losses(run)]
    assert [step for step, _ in losses(run)] == STEPS == list(range(1, train_m["steps"] + 1))
    for key in ("train/lr", "train/examples_per_s", "train/rss_mb"):
        assert sorted(m.step for m in client.get_metric_history(record["run_id"], key)) == STEPS
    f1 = client.get_metric_history(record["run_id"], "eval/val_macro_f1")
    assert sorted(m.step for m in f1) == [2, 4]
    metrics = got.data.metrics
    assert metrics["summary/steps"] == 4 and metrics["summary/train_seconds"] > 0
    assert metrics["summary/best_val_macro_f1"] == pytest.approx(max(m.value for m in f1))
    assert list((run / "train/tb").glob("events.out.tfevents.*"))  # TensorBoard stays


def test_run_logs_test_metrics_and_the_run_files(pipeline):
    client, run, run_id = pipeline["client"], pipeline["run"], pipeline["record"]["run_id"]
    report = json.loads((run / "eval/report.json").read_text())
    metrics = client.get_run(run_id).data.metrics
    assert metrics["test/macro_f1"] == pytest.approx(report["model"]["metrics"]["macro_f1"])
    assert metrics["test/accuracy"] == pytest.approx(report["model"]["metrics"]["accuracy"])
    tfidf = report["baselines"]["tfidf_lr"]["metrics"]["macro_f1"]
    assert metrics["baseline/tfidf_lr/macro_f1"] == pytest.approx(tfidf)
    logged = artifacts(client, run_id)
    assert {
        "eval/report.json",
        "eval/report.html",
        "config/verticalize.yaml",
        "data/manifest.json",
        "train/manifest.json",
        "eval/manifest.json",
        "export/manifest.json",
        "train/metrics.csv",
    } <= logged
    assert "eval/predictions.jsonl" not in logged  # test texts stay out of the store


def test_registry_works_beside_the_tracking_run(pipeline):
    uri = pipeline["record"]["tracking_uri"]
    rows = registry.list_versions(None, uri)
    assert [(r["name"], r["version"], r["aliases"]) for r in rows] == [
        ("tiny-tracked", "1", ["champion"])
    ]
    # the registry's own MLflow run (same experiment) is not a training: `runs` leaves it out
    experiment = pipeline["client"].get_experiment_by_name("tiny-tracked").experiment_id
    assert len(pipeline["client"].search_runs([experiment])) == 2
    [row] = api.runs(pipeline["runs"])
    assert row["run_id"] == pipeline["record"]["run_id"]
    assert row["registered"] == "tiny-tracked/1"


def test_runs_command_lists_the_run_with_its_metrics(pipeline):
    result = CliRunner().invoke(app, ["runs", str(pipeline["runs"]), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    train_m = json.loads((pipeline["run"] / "train/manifest.json").read_text())
    assert row["run_name"] == f"tiny-tracked-{train_m['fingerprint'][:8]}"
    assert (row["experiment"], row["status"], row["task"]) == (
        "tiny-tracked",
        "FINISHED",
        "classification",
    )
    assert (row["base_model"], row["method"], row["steps"]) == ("all-MiniLM-L6-v2", "full", 4)
    assert row["train_loss"] == pytest.approx(losses(pipeline["run"])[-1][1])
    assert row["best_metric"] == "val_macro_f1" and row["best_value"] is not None
    assert row["main_metric"] == "macro_f1" and "macro_f1" in row["test"]
    assert row["train_seconds"] == pytest.approx(train_m["train_seconds"])
    # the YAML finds the same store; the table names the experiment
    table = CliRunner().invoke(app, ["runs", str(pipeline["config"])])
    assert table.exit_code == 0 and "experiment tiny-tracked" in table.stderr


def test_rerun_that_changes_nothing_logs_nothing_new(pipeline):
    client, run_id = pipeline["client"], pipeline["record"]["run_id"]
    before = len(client.get_metric_history(run_id, "test/macro_f1"))
    assert all(r.skipped for r in api.run(pipeline["config"]))
    assert len(client.get_metric_history(run_id, "test/macro_f1")) == before == 1


def test_resumed_training_logs_on_into_the_same_mlflow_run(tmp_path):
    config, runs = make_project(tmp_path)
    api.data(config)
    api.train(config)
    run = runs / "tiny"
    first = json.loads((run / "train/tracking.json").read_text())["run_id"]
    client = MlflowClient(uri_of(runs / "mlflow.db"))
    # what a killed training leaves: an earlier checkpoint, no manifest, the MLflow run RUNNING
    shutil.rmtree(run / "train/checkpoints/step-0000004")
    (run / "train/manifest.json").unlink()
    client.update_run(first, "RUNNING")

    resumed = api.train(config)
    assert resumed.manifest["resumed_from"].endswith("step-0000002")
    assert json.loads((run / "train/tracking.json").read_text())["run_id"] == first
    assert client.get_run(first).info.status == "FINISHED"
    history = client.get_metric_history(first, "train/loss")
    assert sorted(m.step for m in history) == STEPS  # steps 3-4 are not logged twice

    api.train(config, overrides=["train.lr=1e-4"])  # another config: a new training, new run
    second = json.loads((run / "train/tracking.json").read_text())["run_id"]
    assert second != first
    assert sorted(m.step for m in client.get_metric_history(second, "train/loss")) == STEPS
    assert {r["run_id"] for r in api.runs(runs)} == {first, second}


def test_mlflow_off_creates_no_store_while_tensorboard_logs(tmp_path):
    config, runs = make_project(tmp_path)
    api.data(config)
    api.train(config, overrides=["train.mlflow=false"])
    cfg = api.load(config, ["train.mlflow=false"])
    tracking.log_pipeline(cfg, RunFolder(cfg))
    run = runs / "tiny"
    assert list((run / "train/tb").glob("events.out.tfevents.*"))
    assert not (run / "train/tracking.json").exists()
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]  # no mlflow.db, no mlartifacts
    assert api.runs(runs) == []

    # switched on later: the pipeline's end tracks the untracked training from metrics.jsonl
    cfg = api.load(config)
    tracking.log_pipeline(cfg, RunFolder(cfg))
    [row] = api.runs(runs)
    assert (row["status"], row["steps"]) == ("FINISHED", 4)
    history = MlflowClient(uri_of(runs / "mlflow.db")).get_metric_history(
        row["run_id"], "train/loss"
    )
    assert sorted(m.step for m in history) == STEPS


def test_metric_names_keep_generation_stages_apart():
    row = {"event": "train", "epoch": 0, "step": 3, "loss": 1.5, "lr": 1e-4, "ok": True}
    assert {k: (v, step) for k, v, _, step in tracking.metric_points(row, "train")} == {
        "train/epoch": (0.0, 3),
        "train/loss": (1.5, 3),
        "train/lr": (1e-4, 3),
    }
    evaluation = {"event": "eval", "epoch": 0, "step": 2, "val_loss": 2.0, "val_perplexity": 7.4}
    assert {k for k, *_ in tracking.metric_points(evaluation, "sft")} == {
        "sft/eval/epoch",
        "sft/eval/val_loss",
        "sft/eval/val_perplexity",
    }
    pretraining = tracking.metric_points(row, "continued_pretraining")
    assert "continued_pretraining/train/loss" in {k for k, *_ in pretraining}


def test_tensorboard_off_and_a_custom_uri_still_track(tmp_path):
    config, runs = make_project(tmp_path)
    store = tmp_path / "elsewhere" / "tracking.db"
    sets = [
        "train.tensorboard=false",
        f"train.mlflow_uri={uri_of(store)}",
        "train.mlflow_experiment=custom-exp",
    ]
    api.data(config)
    api.train(config, overrides=sets)
    run = runs / "tiny"
    assert not (run / "train/tb").exists()
    assert not (runs / "mlflow.db").exists()
    [row] = api.runs(uri=uri_of(store), experiment="custom-exp")
    assert row["experiment"] == "custom-exp" and row["steps"] == 4
    history = MlflowClient(uri_of(store)).get_metric_history(row["run_id"], "train/loss")
    assert sorted(m.step for m in history) == STEPS
    with pytest.raises(RegistryError, match="'custom-exp'"):
        api.runs(uri=uri_of(store), experiment="no-such-experiment")


def test_a_new_store_is_a_copy_of_a_migrated_template(tmp_path, monkeypatch):
    """The first store migrates a template into the cache; later stores copy it (no
    migration), work for tracking and the registry, and keep their artifacts beside them."""
    monkeypatch.setenv("VERTICALIZE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    open_client(uri_of(tmp_path / "a" / "mlflow.db"), create=True).search_experiments()
    (template,) = (tmp_path / "cache" / "mlflow").iterdir()
    pristine = template.read_bytes()
    db = tmp_path / "b" / "mlflow.db"
    client = open_client(uri_of(db), create=True)
    assert db.is_file()  # copied before MLflow saw it
    run = client.create_run(client.create_experiment("x", artifact_location=None)).info.run_id
    client.log_metric(run, "loss", 0.5, step=1)
    client.create_registered_model("m")
    assert [m.value for m in client.get_metric_history(run, "loss")] == [0.5]
    default = client.get_experiment("0").artifact_location
    assert default == (tmp_path / "b" / "mlartifacts" / "0").as_uri()
    assert template.read_bytes() == pristine
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]
    assert not (tmp_path / "mlruns").exists()
    template.write_bytes(b"not a database")  # a damaged template: MLflow migrates, as before
    client = open_client(uri_of(tmp_path / "c" / "mlflow.db"), create=True)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert not template.exists()


def test_a_failing_store_warns_once_and_training_goes_on(tmp_path, capsys):
    config, runs = make_project(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    api.data(config)
    result = api.train(config, overrides=[f"train.mlflow_uri={uri_of(tmp_path / 'a-file/x.db')}"])
    assert result.manifest["complete"] and result.manifest["steps"] == 4
    err = capsys.readouterr().err
    assert err.count("MLflow tracking to") == 1 and "Training goes on" in err
