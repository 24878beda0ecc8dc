"""`verticalize plan` without --json: the plan as rich tables."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from verticalize.console import console

PARTS = ("weights", "gradients", "optimizer", "activations", "runtime", "total")


def _gb(n: float | None) -> str:
    return "" if n is None else f"{n / 1e9:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not calibrated (--calibrate-steps 0)"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"


def print_plan(p: dict) -> None:
    """Summary, memory per method and precision, and the recommendation with its reasons."""
    tok = p["tokens"]
    console.print(
        f"[bold]plan[/bold] {escape(p['name'])}: {escape(str(p['base_model']))} "
        f"({p['method']}, {p['precision']}), {p['trainable_params']:,} of {p['params']:,} "
        f"parameters trainable"
    )
    console.print(
        f"  data: {tok['examples']:,} examples, {tok['total']:,} training tokens "
        f"(longest batch row {tok['seq_len']}); training ≈ {p['train_flops']:.3g} FLOPs"
    )
    console.print(
        f"  peak memory ≈ {_gb(p['peak_memory_bytes'])} GB of "
        f"{_gb(p['available_memory_bytes'])} GB available"
        + ("" if p["fits"] else " [red](does not fit)[/red]")
    )
    cal = p.get("calibration")
    speed = f", {cal['seconds_per_step']:.2f} s per step" if cal else ""
    console.print(f"  wall time ≈ {_duration(p['est_seconds'])}{speed}")
    if cal and cal["peak_rss_bytes"] > 1.1 * p["peak_memory_bytes"]:
        console.print(
            f"  [yellow]the calibration steps already peaked at {_gb(cal['peak_rss_bytes'])} GB, "
            "above the estimate: plan with the larger number[/yellow]"
        )
    if p.get("measured"):
        m = p["measured"]
        console.print(
            f"  measured by the last train run: peak RSS {_gb(m.get('peak_rss_bytes'))} GB, "
            f"{m.get('train_seconds')} s"
        )

    table = Table(title="peak memory (GB) by method and precision", title_justify="left")
    for col in ("method", "precision", "trainable", "TFLOPs", *PARTS):
        table.add_column(col, justify="left" if col in ("method", "precision") else "right")
    for method, d in p["methods"].items():
        for prec, mem in d["memory"].items():
            chosen = method == p["method"] and prec == p["precision"]
            table.add_row(
                method,
                prec,
                f"{d['trainable_params']:,}",
                f"{d['train_flops'] / 1e12:.1f}",
                *(_gb(mem[k]) for k in PARTS),
                style="bold" if chosen else None,
            )
    console.print(table)
    r = p["recommendation"]
    console.print(
        f"[bold]recommended[/bold]: method {r['method']}, {r['precision']}, batch_size "
        f"{r['batch_size']} × grad_accum_steps {r['grad_accum_steps']}, lr {r['lr']:g}"
    )
    for why in r["reasons"]:
        console.print(f"  - {escape(why)}")
