"""A project's live state, read from its run folder and its newest job (never from memory):
stage by stage, the training's step / total / ETA, the metric rows and the log's tail."""

from __future__ import annotations

import json
import time
from pathlib import Path

from verticalize.web.jobs import ACTIVE, JobStore
from verticalize.web.projects import Project, run_dir

PIPELINE = ("data", "train", "eval", "export")


def metric_rows(folder: Path | None, since: int = 0) -> list[dict]:
    """Rows of train/metrics.jsonl from index `since` (a half-written last line is left for
    the next read)."""
    if folder is None:
        return []
    path = folder / "train" / "metrics.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines()[since:]:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def eta(rows: list[dict]) -> dict:
    """step, total and seconds left from the train rows of the current (resumed) session."""
    train = [r for r in rows if r.get("event") == "train"]
    if not train:
        return {}
    session = train
    for i in range(len(train) - 1, 0, -1):  # elapsed_s restarts when training resumes
        if train[i].get("elapsed_s", 0) < train[i - 1].get("elapsed_s", 0):
            session = train[i:]
            break
    last = train[-1]
    out = {"step": last["step"], "total": last.get("total_steps")}
    first = session[0]
    done = last["step"] - first["step"] + 1
    seconds = last.get("elapsed_s")
    if out["total"] and seconds:
        out["eta_s"] = round(seconds / done * (out["total"] - last["step"]), 1)
    return out


def stage_states(folder: Path | None, since: float = 0.0) -> dict[str, str]:
    """done / pending per stage; with `since` (an active job's start) a manifest older than
    it is the previous run's, so its stage is pending again."""
    states = {}
    for stage in PIPELINE:
        manifest = folder / stage / "manifest.json" if folder is not None else None
        done = manifest is not None and manifest.is_file() and manifest.stat().st_mtime >= since
        states[stage] = "done" if done else "pending"
    return states


def live_state(project: Project, store: JobStore) -> dict:
    folder = run_dir(project)
    job = store.latest(project.key)
    rows = metric_rows(folder)
    state = {
        "project": project.key,
        "run_dir": str(folder) if folder else None,
        "stages": stage_states(folder),
        "progress": eta(rows),
        "rows": len(rows),
        "job": None,
        "log": "",
        "time": time.time(),
    }
    if job is not None:
        keep = ("id", "stage", "status", "rc", "created", "started", "settled")
        state["job"] = {k: job.get(k) for k in keep}
        state["job"]["active"] = job["status"] in ACTIVE
        state["log"] = store.log_tail(job["id"])
        if job["status"] in ("running", "stopping") and job["stage"] in ("run", *PIPELINE):
            stages = PIPELINE if job["stage"] == "run" else (job["stage"],)
            fresh = stage_states(folder, job.get("started", 0.0))
            state["stages"] |= {s: fresh[s] for s in stages}
            running = next((s for s in stages if state["stages"][s] != "done"), None)
            if running:
                state["stages"][running] = "running"
    return state
