"""The compare page: two evaluated run folders on one test set (the same paired bootstrap and
McNemar test as `verticalize eval --compare`) and their training loss curves in one chart."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException, Request

from verticalize.errors import VerticalizeError
from verticalize.evaluate.compare import compare_runs
from verticalize.runfolder import read_jsonl
from verticalize.web.pages import render

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 260, 56, 12, 12, 30  # the loss chart's box, in px


def compare_response(
    request: Request,
    root: Path,
    folders: dict[str, Path],
    a: str,
    b: str,
    run_ids: Callable[[Path], dict[str, str]],
):
    """The compare page for runs `a` and `b` (empty: just the form to pick them). `folders`:
    the evaluated run folders under `root` by relative path; `run_ids(root)` maps MLflow run
    ids to them. A pair that cannot be compared gives the page with the reason, 422."""
    context = {"nav": "runs", "folders": list(folders), "a": a, "b": b}
    if not a and not b:
        return render(request, "compare.html.j2", **context)
    try:
        path_a = _run_folder("a", a, root, folders, run_ids)
        path_b = _run_folder("b", b, root, folders, run_ids)
    except HTTPException as e:
        return refusal(request, folders, a, b, e.detail, e.status_code)
    try:
        result = compare_runs(path_a, path_b)
    except (VerticalizeError, ValueError) as e:
        return refusal(request, folders, a, b, str(e), 422)
    runs = [_side("A", path_a, root, "series"), _side("B", path_b, root, "series b")]
    return render(
        request,
        "compare.html.j2",
        result=result,
        runs=runs,
        chart=loss_chart(runs),
        **context,
    )


def refusal(request: Request, folders: dict[str, Path], a: str, b: str, error: str, status: int):
    """The compare form with the reason the pair cannot be compared."""
    context = {"nav": "runs", "folders": list(folders), "a": a, "b": b}
    return render(request, "compare.html.j2", status, error=error, **context)


def _run_folder(field: str, value: str, root: Path, folders: dict[str, Path], run_ids) -> Path:
    """A run folder under `root` named by its relative path or by its MLflow run id."""
    if not value:
        raise HTTPException(
            422, f"{field}: no run given. Fix: pick two runs (?a=<run folder>&b=<run folder>)."
        )
    if value in folders:
        return folders[value]
    fix = "Fix: pick one of the runs listed on /runs or in the compare form."
    parts = Path(value).parts
    if "\x00" not in value and not value.startswith(("/", "\\")) and ".." not in parts:
        path = (root / value).resolve()
        if path.is_relative_to(root.resolve()) and path.is_dir():
            return path  # not evaluated: compare_runs says what is missing
    if RUN_ID.match(value):
        folder = run_ids(root).get(value)
        if folder is not None:
            return (root / folder).resolve()
        raise HTTPException(
            404,
            f"{field}: the tracked run {value} has no run folder under {root} (its run_dir "
            f"is elsewhere or gone), so it cannot be compared. {fix}",
        )
    raise HTTPException(404, f"{field}: no run folder {value!r} under {root}. {fix}")


def _side(letter: str, path: Path, root: Path, css: str) -> dict:
    relative = path.relative_to(root.resolve()).as_posix()
    return {
        "letter": letter,
        "folder": relative,
        "name": _report_name(path) or path.name,
        "css": css,
        "points": loss_points(path),
    }


def _report_name(path: Path) -> str | None:
    try:
        return json.loads((path / "eval" / "report.json").read_text(encoding="utf-8")).get("name")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def loss_points(run: Path) -> list[tuple[float, float]]:
    """(step, train loss) from the run's train/metrics.jsonl; [] when it has none."""
    try:
        rows = read_jsonl(run / "train" / "metrics.jsonl")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    return [
        (float(r["step"]), float(r["loss"]))
        for r in rows
        if r.get("event") == "train"
        and isinstance(r.get("step"), int | float)
        and isinstance(r.get("loss"), int | float)
    ]


def loss_chart(runs: list[dict]) -> dict | None:
    """Polylines (SVG coordinates) of each run's loss on shared axes, with the axis labels;
    None when neither run logged a loss."""
    every = [p for run in runs for p in run["points"]]
    if not every:
        return None
    xs, ys = [p[0] for p in every], [p[1] for p in every]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

    def sx(x: float) -> float:
        return LEFT + ((x - x0) / (x1 - x0) if x1 > x0 else 0.5) * (W - LEFT - RIGHT)

    def sy(y: float) -> float:
        return H - BOTTOM - ((y - y0) / (y1 - y0) if y1 > y0 else 0.5) * (H - TOP - BOTTOM)

    lines = [
        {
            "css": run["css"],
            "letter": run["letter"],
            "points": " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run["points"]),
            "n": len(run["points"]),
            "last": run["points"][-1][1] if run["points"] else None,
        }
        for run in runs
    ]
    return {
        "width": W,
        "height": H,
        "box": {"x": LEFT, "y": TOP, "w": W - LEFT - RIGHT, "h": H - TOP - BOTTOM},
        "lines": lines,
        "y_max": f"{y1:.3g}",
        "y_min": f"{y0:.3g}",
        "x_min": f"{x0:g}",
        "x_max": f"{x1:g}",
        "label_x": LEFT - 6,
        "top_y": TOP + 10,
        "bottom_y": H - BOTTOM,
        "axis_y": H - 8,
        "right_x": W - RIGHT,
    }
