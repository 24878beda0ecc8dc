"""The Python API: the same verbs as the CLI, each returning what the stage wrote."""

from __future__ import annotations

import time
from pathlib import Path

from verticalize.config import Config, default_config_text, load_config
from verticalize.console import console
from verticalize.errors import ConfigError
from verticalize.runfolder import RunFolder, StageResult


def load(config: str | Path | Config, overrides: list[str] | None = None) -> Config:
    """A validated Config from a YAML path (or the Config itself)."""
    return config if isinstance(config, Config) else load_config(config, overrides)


def init(directory: str | Path, name: str | None = None, force: bool = False) -> Path:
    """Write a commented verticalize.yaml into `directory`; returns its path."""
    folder = Path(directory)
    target = folder / "verticalize.yaml"
    if target.exists() and not force:
        raise ConfigError(f"{target}: already exists. Fix: pick another folder, or pass --force.")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(default_config_text(name or folder.resolve().name), encoding="utf-8")
    return target


def _stage(module, config, run_dir, overrides, force) -> StageResult:
    cfg = load(config, overrides)
    tick = time.perf_counter()
    result = module.run(cfg, RunFolder(cfg, run_dir), force=force)
    return _timed(result, time.perf_counter() - tick)


def _timed(result: StageResult, seconds: float) -> StageResult:
    """Record and print a stage's wall time."""
    result.seconds = round(seconds, 2)
    state = "up to date, skipped in" if result.skipped else "done in"
    console.print(f"[bold]{result.stage}[/bold]: {state} {seconds:.1f} s")
    return result


def data(config, run_dir=None, overrides=None, force: bool = False) -> StageResult:
    """Ingest, clean, deduplicate and split; writes run/data/."""
    from verticalize.data import stage

    return _stage(stage, config, run_dir, overrides, force)


def reidentify(config, file: Path, run_dir=None, output: Path | None = None) -> Path:
    """Restore pseudonymized values in `file` (text or JSONL) with the run's PII vault and key;
    writes `output` (default: <file>.reidentified<suffix>) and returns its path."""
    from verticalize.data.outputs import reidentify_file

    cfg = load(config)
    folder = RunFolder(cfg, run_dir)
    out = output or file.with_name(f"{file.stem}.reidentified{file.suffix}")
    return reidentify_file(cfg, folder.root, file, out)


def train(config, run_dir=None, overrides=None, force: bool = False, nproc: int = 1) -> StageResult:
    """Fine-tune the base model on run/data/; writes run/train/ and run/model/. With
    nproc > 1 the stage runs data-parallel in that many processes (torchrun's engine;
    train.batch_size is per process) and `config` must be a YAML path."""
    from verticalize.train import stage

    if nproc <= 1:
        return _stage(stage, config, run_dir, overrides, force)
    from verticalize.train.launch import launch_train

    if isinstance(config, Config):
        raise ConfigError(
            "train with nproc > 1: pass the path of verticalize.yaml (each process loads it). "
            "Fix: api.train('verticalize.yaml', nproc=N, overrides=[...])."
        )
    cfg = load(config, overrides)
    folder = RunFolder(cfg, run_dir)
    folder.require("data", "train")
    launch_train(Path(config), folder.root, overrides or [], force, nproc)
    return StageResult("train", skipped=False, manifest=folder.read_manifest("train"))


def plan(config, run_dir=None, overrides=None, calibrate_steps: int = 3) -> dict:
    """Resource plan before training (P3): parameter counts, training FLOPs, peak memory per
    method and precision, wall time from `calibrate_steps` real steps (0 = skip) and a
    recommendation; runs the data stage if needed and writes run/plan/plan.json."""
    from verticalize.plan import stage

    cfg = load(config, overrides)
    return stage.run(cfg, RunFolder(cfg, run_dir), calibrate_steps).manifest


def evaluate(config, run_dir=None, overrides=None, force: bool = False) -> StageResult:
    """Score run/model/ and the baselines on the test split; writes run/eval/."""
    from verticalize.evaluate import stage

    return _stage(stage, config, run_dir, overrides, force)


def compare(run_a: str | Path, run_b: str | Path) -> tuple[dict, Path]:
    """Compare two evaluated runs on one test set (paired bootstrap CIs, McNemar's test);
    writes <run_b>/eval/compare.json and returns (result, its path)."""
    from verticalize.evaluate.compare import compare_runs, write_comparison

    result = compare_runs(Path(run_a), Path(run_b))
    out = Path(run_b) / "eval" / "compare.json"
    write_comparison(result, out)
    return result, out


def tune(
    config, run_dir=None, trials: int | None = None, sampler: str | None = None, overrides=None
) -> dict:
    """Search the config fields in tune.space (grid, random or TPE, with Optuna), each trial
    trained in <run>/tune/trial-<k> and scored on the validation split; writes
    <run>/tune/{trials.jsonl, results.csv, summary.json, best.yaml} and returns the summary
    (every trial under "results")."""
    from verticalize.tune import tune as run_tune

    return run_tune(config, run_dir, trials, sampler, overrides)


def export(config, run_dir=None, overrides=None, force: bool = False) -> StageResult:
    """Merged Hugging Face folder + model card, ONNX + INT8 (classification) measured against
    the original on the test split; writes run/export/. Raises ExportError (nothing is
    published) when the quantized model loses more than export.max_metric_drop."""
    from verticalize.export import stage

    return _stage(stage, config, run_dir, overrides, force)


def run(
    config, run_dir=None, overrides=None, force: bool = False, nproc: int = 1
) -> list[StageResult]:
    """The whole pipeline; a stage whose inputs did not change is skipped, training resumes.
    With registry.enabled the exported model is registered (and promoted when it beats the
    champion by registry.margin); the outcome is in the last result's manifest."""
    cfg = load(config, overrides)
    results = [data(cfg, run_dir, force=force)]
    if nproc > 1:
        tick = time.perf_counter()
        launched = train(config, run_dir, overrides, force, nproc)
        results.append(_timed(launched, time.perf_counter() - tick))
    else:
        results.append(train(cfg, run_dir, force=force))
    results += [verb(cfg, run_dir, force=force) for verb in (evaluate, export)]
    stages = {r.stage: r.seconds for r in results}
    if cfg.registry.enabled:
        tick = time.perf_counter()
        results[-1].manifest["registry"] = register_and_promote(cfg, run_dir)
        stages["registry"] = round(time.perf_counter() - tick, 2)
        console.print(f"[bold]registry[/bold]: done in {stages['registry']:.1f} s")
    from verticalize.evaluate.report import record_stage_times

    record_stage_times(RunFolder(cfg, run_dir).stage_dir("eval") / "report.json", stages)
    from verticalize.train import tracking

    tracking.log_pipeline(cfg, RunFolder(cfg, run_dir), results[-1].manifest.get("registry"))
    return results


def register_and_promote(config, run_dir=None, overrides=None) -> dict:
    """Register the run's exported model; if a champion exists, promote the new version when
    it beats the champion by registry.margin on the same test set, else keep it challenger.
    Writes run/registry/manifest.json."""
    from verticalize.registry import stage

    cfg = load(config, overrides)
    return stage.run(cfg, RunFolder(cfg, run_dir)).manifest["entry"]


def registry_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI the registry commands use: the one given, else $MLFLOW_TRACKING_URI,
    else sqlite:///runs/mlflow.db under the current folder."""
    from verticalize import registry

    return tracking_uri or registry.tracking_uri(None, Path("runs").resolve())


def promote(
    name: str,
    tracking_uri: str | None = None,
    metric: str | None = None,
    margin: float = 0.03,
    force: bool = False,
) -> dict:
    """Make the challenger the champion if it beats it by `margin` on the same test set."""
    from verticalize import registry

    return registry.promote(name, registry_uri(tracking_uri), metric, margin, force)


def rollback(name: str, tracking_uri: str | None = None) -> dict:
    """Restore the previous champion."""
    from verticalize import registry

    return registry.rollback(name, registry_uri(tracking_uri))


def runs(
    path: str | Path | None = None, uri: str | None = None, experiment: str | None = None
) -> list[dict]:
    """The trainings tracked in MLflow, newest first, with their key metrics (steps, final
    train loss, best validation value, test metrics, seconds). The store: `uri`, else the one
    the runs of `path` track to — a verticalize.yaml (train.mlflow_uri, registry.tracking_uri,
    …) or a runs folder (default ./runs: $MLFLOW_TRACKING_URI, else <runs>/mlflow.db).
    Every experiment of that store, or `experiment` only."""
    from verticalize.train.tracked_runs import list_runs, store_uri

    return list_runs(uri or store_uri(Path(path or "runs")), experiment)


def versions(name: str | None = None, tracking_uri: str | None = None) -> list[dict]:
    """Registered versions with their aliases and test metric."""
    from verticalize import registry

    return registry.list_versions(name, registry_uri(tracking_uri))


def serve(
    target: str, settings=None, tracking_uri: str | None = None, project: Config | None = None
) -> None:
    """Start the HTTP service for a run folder, a model folder or models:/name@alias
    (blocks until stopped). `settings` is a ServeConfig (default: its defaults); `project`,
    the project's config when known, gives the data.pii settings feedback is masked with
    (else the defaults)."""
    from verticalize.config import ServeConfig
    from verticalize.serve.server import serve as start

    start(target, settings or ServeConfig(), tracking_uri, project)


def add_api_key(keys_file: str | Path, key_id: str, role: str = "user") -> str:
    """Append a salted hash of a new API key to `keys_file`; returns the key (shown once)."""
    from verticalize.serve.security import add_key

    return add_key(Path(keys_file), key_id, role)


def export_feedback(feedback_dir: str | Path, output: str | Path, task: str) -> int:
    """Write the corrections in a feedback folder as training records (a data source)."""
    from verticalize.serve.feedback import export_corrections

    return export_corrections(Path(feedback_dir), Path(output), task)


def predict(target: str | Path | Config, texts: list[str], run_dir=None) -> list[dict]:
    """Predictions for `texts` from a trained model: `target` is a verticalize.yaml (its run's
    model/) or a model folder. NER gives {"entities": [{start, end, type, text, score}]} with
    character offsets into each text; classification gives {label, score, probs}."""
    from verticalize.predict import load_predictor

    return load_predictor(model_folder(target, run_dir))(list(texts))


def run_folder(config, run_dir=None) -> Path:
    """The run folder of a config (runs/<name> unless run_dir / run_dir: say otherwise)."""
    return RunFolder(load(config), run_dir).root


def model_folder(target: str | Path | Config, run_dir=None) -> Path:
    """The model/ folder of a config's run, or `target` itself when it is a folder."""
    if not isinstance(target, Config) and Path(target).is_dir():
        return Path(target)
    folder = RunFolder(load(target), run_dir)
    if not folder.model_dir.is_dir():
        raise ConfigError(
            f"{folder.model_dir}: no trained model yet. Fix: run `verticalize train` (or run) "
            "with this config first."
        )
    return folder.model_dir
