"""`tune(...)`: the Optuna study — the data stage once, then the sampler's trials, each a
train stage scored on the validation split, then the summary and best.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from verticalize.config import Config, load_config
from verticalize.console import console
from verticalize.data import stage as data_stage
from verticalize.errors import ConfigError, TrainingError, VerticalizeError
from verticalize.runfolder import RunFolder
from verticalize.tune.space import Param, _source
from verticalize.tune.trials import _Study, _TrialFailed

SAMPLERS = ("grid", "random", "tpe")


def _sampler(name: str, params: list[Param], seed: int):
    import optuna

    if name == "grid":
        space = {p.name: p.encoded(p.points) for p in params}
        return optuna.samplers.GridSampler(space, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


# ---------------------------------------------------------------- entry point


def tune(
    config: str | Path | Config,
    run_dir: str | Path | None = None,
    trials: int | None = None,
    sampler: Literal["grid", "random", "tpe"] | None = None,
    overrides: list[str] | None = None,
) -> dict:
    """Search `tune.space` with Optuna; returns the summary written to <run>/tune/summary.json
    (with every trial under "results")."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - a declared dependency
        raise VerticalizeError(
            "tune needs Optuna, which is not installed. Fix: pip install 'optuna>=4,<6'."
        ) from None

    src = _source(config, overrides)
    cfg = src.cfg
    sampler = sampler or cfg.tune.sampler
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r}: unknown sampler. Fix: use grid, random or tpe.")
    budget = trials if trials is not None else cfg.tune.trials
    if budget < 1:
        raise ConfigError(f"--trials {budget}: the budget must be at least 1. Fix: e.g. 8.")
    study_state = _Study(src, run_dir, sampler, budget)
    n = budget
    if sampler == "grid":
        n = min(budget, study_state.grid_size)
        if budget < study_state.grid_size:
            console.print(
                f"tune: the grid has {study_state.grid_size} points; a budget of {budget} "
                f"trials tries {budget} of them"
            )

    data = data_stage.run(cfg, RunFolder(cfg, run_dir))  # once; the trials copy it
    study_state.base_data = data.manifest
    if not (data.manifest.get("splits") or {}).get("validation"):
        raise ConfigError(
            f"{src.where(('data', 'split', 'validation'))}: tune scores trials on the "
            "validation split, and it is empty. Fix: set data.split.validation (e.g. 0.1)."
        )
    tune_dir = study_state.dir
    tune_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("trials.jsonl", "results.csv", "summary.json", "best.yaml"):
        (tune_dir / stale).unlink(missing_ok=True)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by us
    try:
        study = optuna.create_study(
            direction=study_state.direction,
            sampler=_sampler(sampler, study_state.params, cfg.seed),
            study_name=f"{cfg.name}-tune",
        )
        study.optimize(
            study_state.objective,
            n_trials=n,
            catch=(_TrialFailed,),
            callbacks=[study_state.record],
            gc_after_trial=False,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)

    used = {f"trial-{r['trial']}" for r in study_state.rows}
    for folder in tune_dir.glob("trial-*"):  # trials of an earlier, longer call
        if folder.is_dir() and folder.name not in used:
            shutil.rmtree(folder, ignore_errors=True)
    if study_state.best is not None:
        study_state.write_best_yaml(final=True)
    summary = study_state.summary()
    if study_state.best is None:
        first = next((r["error"] for r in study_state.rows if r["error"]), "unknown")
        raise TrainingError(
            f"tune: all {len(study_state.rows)} trials failed; the first said: {first}. "
            f"Fix: narrow tune.space to values that train (details in {tune_dir / 'trials.jsonl'})."
        )
    try:
        load_config(tune_dir / "best.yaml")
    except ConfigError as e:  # should not happen: say so rather than hide it
        console.print(f"[yellow]warning:[/yellow] best.yaml does not load: {e}")
    return summary
