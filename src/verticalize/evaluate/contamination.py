"""The eval report's contamination section (E9): the model's headline metrics on the whole
test split and on the test split without the records the data stage flagged
(data/contamination.jsonl: a long n-gram shared with train or a benchmark file), scored by
the task plugin from eval/predictions.jsonl."""

from __future__ import annotations

from pathlib import Path

from verticalize.config import Config
from verticalize.metrics import lower_is_better
from verticalize.plugins import TaskPlugin
from verticalize.runfolder import read_jsonl


def contamination_section(
    cfg: Config, plugin: TaskPlugin, data_m: dict, data_dir: Path, eval_dir: Path
) -> dict | None:
    """None when the data stage did not check; else counts, and with flagged records and a
    task that can score a subset, the metrics with and without them and their change."""
    checked = data_m.get("contamination")
    if not checked:
        return None
    path = data_dir / "contamination.jsonl"
    flagged = {r["id"] for r in read_jsonl(path)} if path.is_file() else set()
    section: dict = {
        "ngram": checked["ngram"],
        "unit": checked["unit"],
        "n_flagged": len(flagged),
        "n_train_overlap": checked["n"],
        "main_metric": plugin.main_metric,
        "metrics": None,
    }
    predictions = eval_dir / "predictions.jsonl"
    if not flagged:
        section["note"] = "No test record shares an n-gram with train or a benchmark file"
        return section
    if plugin.score_predictions is None or not predictions.is_file():
        section["note"] = (
            f"Task {plugin.name} cannot score a subset of its test predictions, so only the "
            "counts are given"
        )
        return section
    rows = read_jsonl(predictions)
    clean = [r for r in rows if r.get("id") not in flagged]
    keys = list(dict.fromkeys([plugin.main_metric, *plugin.summary_metrics]))
    scored = {"all": rows, "without_flagged": clean}
    section["metrics"] = {
        name: {"n": len(subset), **_pick(plugin.score_predictions(cfg, subset, data_m), keys)}
        if subset
        else {"n": 0}
        for name, subset in scored.items()
    }
    a, b = section["metrics"]["all"], section["metrics"]["without_flagged"]
    section["delta"] = {k: b[k] - a[k] for k in keys if _number(a.get(k)) and _number(b.get(k))}
    main = section["delta"].get(plugin.main_metric)
    if main is not None:
        gain = -main if lower_is_better(plugin.main_metric) else main
        section["note"] = (
            f"{plugin.main_metric} {a[plugin.main_metric]:.4f} on all {len(rows)} test records, "
            f"{b[plugin.main_metric]:.4f} on the {len(clean)} not flagged: "
            + ("without them the score is lower" if gain < 0 else "without them it is not lower")
        )
    return section


def _pick(metrics: dict, keys: list[str]) -> dict:
    return {k: metrics[k] for k in keys if k in metrics}


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
