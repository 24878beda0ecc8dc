"""`verticalize tune` (T8): grid / random / TPE search over any config field.

The data stage runs once in the run folder; each trial is a normal train stage in its own
run folder `<run>/tune/trial-<k>` (a copy of the base data/, or its own data stage when
the trial changes data.*, seed or task) and is scored on the VALIDATION split, never the
test split. Results are written as each trial ends:

  <run>/tune/trials.jsonl   one line a trial: params, value, state, seconds, error
  <run>/tune/results.csv    the same as a table
  <run>/tune/summary.json   sampler, metric, direction, best trial, path of best.yaml
  <run>/tune/best.yaml      the original YAML with the best params applied

Only the best trial keeps its model/ and checkpoints; the others keep their logs.

The modules: `space` (the config and its search space), `trials` (the study's state: one
trial through the data and train stages' run(), scoring, the results files), `edits`
(best.yaml: the config's edits kept in the YAML text) and `study` (the Optuna study and
the `tune` entry point).
"""

from verticalize.tune.edits import edited_yaml
from verticalize.tune.space import _source as _source
from verticalize.tune.space import check_space
from verticalize.tune.study import tune
from verticalize.tune.trials import _Study as _Study
from verticalize.tune.trials import tune_metric

__all__ = ["tune", "check_space", "edited_yaml", "tune_metric"]
