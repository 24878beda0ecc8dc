"""The `verticalize` command: each command is a thin call into a stage's run()."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from verticalize import api
from verticalize.console import console
from verticalize.errors import ConfigError, VerticalizeError, crash_line, write_crash_log
from verticalize.runfolder import StageResult
from verticalize.train.distributed import (
    LAUNCHED,
    is_main_process,
    leave_process_group,
    world_size,
)

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a bug report must not dump config values or data
    no_args_is_help=True,
    help="Turn a general pretrained model into a vertical domain model, from one YAML.",
)

ConfigArg = Annotated[Path, typer.Argument(help="Path to verticalize.yaml.", show_default=False)]
RunDir = Annotated[
    Path | None, typer.Option("--run-dir", help="Where the run folder goes (default runs/<name>).")
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a YAML field, e.g. --set train.epochs=1 (repeatable)."),
]
Force = Annotated[bool, typer.Option("--force", help="Re-run even if the inputs did not change.")]


def _report(results: list[StageResult]) -> None:
    for r in results:
        if r.skipped:
            console.print(f"[dim]{r.stage}: up to date, skipped[/dim]")
        else:
            m = r.manifest
            dropped = ", ".join(f"{k}={v}" for k, v in m.get("dropped", {}).items()) or "none"
            console.print(
                f"[green]{r.stage}[/green]: in {m['in']}, out {m['out']}, dropped: {dropped}"
            )
        for name, path in r.outputs.items():
            console.print(f"  {name}: {path}")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new verticalize.yaml.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    force: Force = False,
) -> None:
    """Write a commented verticalize.yaml to start from."""
    path = api.init(directory, name, force)
    console.print(f"wrote {path}; edit data.sources, then run `verticalize run {path}`")


@app.command()
def data(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="YAML | reidentify YAML FILE",
            help="verticalize.yaml; or `reidentify <yaml> <file>` to restore pseudonymized "
            "values in a file with the run's PII vault and key.",
            show_default=False,
        ),
    ],
    run_dir: RunDir = None,
    set_: Sets = None,
    force: Force = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="reidentify: where to write.")
    ] = None,
) -> None:
    """Ingest, validate, clean, desensitize, deduplicate and split the data (run/data/)."""
    if args[0] == "reidentify":
        if len(args) != 3:
            raise typer.BadParameter("usage: verticalize data reidentify <yaml> <file> [-o OUT]")
        cfg = api.load(Path(args[1]), set_)  # --set may move run_dir: the vault is there
        path = api.reidentify(cfg, Path(args[2]), run_dir, output)
        console.print(f"restored file written to {path} (keep it as safe as the original data)")
        return
    if len(args) != 1:
        raise typer.BadParameter("expected one verticalize.yaml")
    result = api.data(Path(args[0]), run_dir, set_, force)
    if not result.skipped:
        _data_table(result.manifest)
    _report([result])


def _data_table(m: dict) -> None:
    """D10: every step's in / out / dropped-by-reason, as a table."""
    from rich.table import Table

    table = Table(title="data: every step balances in = out + dropped", title_justify="left")
    for col in ("step", "in", "out", "dropped", "why"):
        table.add_column(col, justify="left" if col in ("step", "why") else "right")
    for s in m["steps"]:
        why = ", ".join(f"{k}={v}" for k, v in s["dropped"].items())
        if s.get("added"):
            why = f"added {s['added']}" + (f"; {why}" if why else "")
        table.add_row(s["step"], str(s["in"]), str(s["out"]), str(sum(s["dropped"].values())), why)
    console.print(table)
    kanon = m.get("pii", {}).get("k_anonymity")
    if kanon and not kanon["meets_target"]:
        console.print(
            f"[yellow]warning:[/yellow] k-anonymity over {', '.join(kanon['quasi_identifiers'])} "
            f"is {kanon['k']} (target {kanon['target']}): {kanon['n_records_below_target']} "
            "records sit in smaller classes; generalize or drop those columns before sharing"
        )
    for src in m.get("sources", []):
        if src.get("empty"):
            console.print(f"[yellow]warning:[/yellow] source {escape(src['path'])} has no records")


Nproc = Annotated[
    int,
    typer.Option(
        "--nproc",
        min=1,
        help="Train data-parallel in N processes on this machine (torchrun; batch_size is "
        "per process). Multi-node: launch `verticalize train` with torchrun / srun.",
    ),
]
IgnoreMemoryGuard = Annotated[
    bool,
    typer.Option(
        "--ignore-memory-guard", help="Train even when the memory estimate exceeds what is free."
    ),
]


def _guard_overrides(set_: list[str] | None, ignore_memory_guard: bool) -> list[str] | None:
    return [*(set_ or []), "train.memory_guard=warn"] if ignore_memory_guard else set_


@app.command()
def train(
    config: ConfigArg,
    run_dir: RunDir = None,
    set_: Sets = None,
    force: Force = False,
    nproc: Nproc = 1,
    ignore_memory_guard: IgnoreMemoryGuard = False,
) -> None:
    """Fine-tune the base model; resumes from the last checkpoint (run/train/, run/model/)."""
    result = api.train(config, run_dir, _guard_overrides(set_, ignore_memory_guard), force, nproc)
    if is_main_process() and not os.environ.get(LAUNCHED):  # `--nproc N`: the launcher reports
        _report([result])


@app.command()
def plan(
    config: ConfigArg,
    run_dir: RunDir = None,
    set_: Sets = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    calibrate_steps: Annotated[
        int, typer.Option("--calibrate-steps", min=0, help="Timed training steps; 0 = skip.")
    ] = 3,
) -> None:
    """Parameters, FLOPs, peak memory and wall time before training, and what to change."""
    from verticalize.plan.report import print_plan

    result = api.plan(config, run_dir, set_, calibrate_steps)
    if json_:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        print_plan(result)


@app.command("eval")
def eval_(
    config: Annotated[
        Path | None, typer.Argument(help="Path to verticalize.yaml.", show_default=False)
    ] = None,
    run_dir: RunDir = None,
    set_: Sets = None,
    force: Force = False,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--compare",
            help="Two run folders evaluated on the same test split: paired bootstrap "
            "confidence intervals and McNemar's test (writes <runB>/eval/compare.json).",
        ),
    ] = None,
) -> None:
    """Evaluate the model and the baselines on the test split (run/eval/report.*)."""
    if compare and (set_ or config):
        given = "--set" if set_ else f"the YAML {config}"
        raise ConfigError(
            "eval --compare reads two evaluated run folders, not a verticalize.yaml, so "
            f"{given} has nothing to apply to. Fix: drop it, or evaluate a YAML without "
            "--compare."
        )
    if compare:
        result, path = api.compare(*compare)
        for name, m in result["metrics"].items():
            console.print(
                f"{name}: A {m['a']:.4f}  B {m['b']:.4f}  Δ {m['delta']:+.4f}  "
                f"{m['confidence']:.0%} CI [{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]"
            )
        console.print(f"[bold]{escape(result['verdict'])}[/bold]\n  comparison: {path}")
        return
    if config is None:
        raise typer.BadParameter("give a verticalize.yaml, or --compare RUN_A RUN_B")
    _report([api.evaluate(config, run_dir, set_, force)])


@app.command()
def run(
    config: ConfigArg,
    run_dir: RunDir = None,
    set_: Sets = None,
    force: Force = False,
    nproc: Nproc = 1,
    ignore_memory_guard: IgnoreMemoryGuard = False,
) -> None:
    """The whole pipeline: data → train → eval → export (→ registry), skipping what is current."""
    results = api.run(config, run_dir, _guard_overrides(set_, ignore_memory_guard), force, nproc)
    _report(results)
    _export_summary(results[-1].manifest)
    report = Path(results[2].outputs.get("report_json", "")) if results[2].outputs else None
    if report and report.is_file():
        body = json.loads(report.read_text())
        console.print(f"[bold]{body['verdict']}[/bold]")


@app.command()
def tune(
    config: ConfigArg,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Trial budget (default: tune.trials).")
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option("--sampler", help="grid, random or tpe (default: tune.sampler)."),
    ] = None,
    run_dir: RunDir = None,
    set_: Sets = None,
) -> None:
    """Search config fields (tune.space) with grid / random / TPE; best config to run/tune/."""
    summary = api.tune(config, run_dir, trials, sampler, set_)
    _tune_table(summary)


def _tune_table(s: dict) -> None:
    from rich.table import Table

    best = (s.get("best") or {}).get("trial")
    names = list(s["space"])
    console.print(
        f"[bold]tune[/bold]: {s['trials']} trials ({s['sampler']}), {escape(s['metric'])} on "
        f"the validation split ({s['direction']}), {s['failed']} failed"
    )
    table = Table()
    table.add_column("trial", justify="right")
    for name in names:
        table.add_column(escape(name), justify="right")
    table.add_column(escape(s["metric"]), justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("note")
    for r in s["results"]:
        cells = [f"{r['trial']} ★" if r["trial"] == best else str(r["trial"])]
        for name in names:
            v = r["params"].get(name)
            shown = v if isinstance(v, str) else json.dumps(v)
            cells.append(escape(f"{v:.4g}" if isinstance(v, float) else shown))
        cells.append("failed" if r["value"] is None else f"{r['value']:.4f}")
        cells.append("" if r["seconds"] is None else f"{r['seconds']:.1f}")
        note = escape((r["error"] or "")[:80]) or ("reused" if r.get("reused") else "")
        table.add_row(*cells, note, style="bold green" if r["trial"] == best else None)
    console.print(table)
    b = s["best"]
    console.print(
        f"[bold]best: trial {b['trial']}, {s['metric']} = {b['value']:.4f}[/bold] "
        f"({escape(', '.join(f'{k}={v}' for k, v in b['params'].items()))})"
    )
    console.print(f"  best config: {s['best_config']}")
    console.print(f"  results: {s['tune_dir']}")


@app.command()
def predict(
    target: Annotated[
        Path, typer.Argument(help="verticalize.yaml (uses its run's model/) or a model folder.")
    ],
    text: Annotated[
        list[str] | None, typer.Option("--text", help="A text to tag (repeatable).")
    ] = None,
    input_: Annotated[
        Path | None,
        typer.Option(
            "--input", help='A .jsonl file (one {"text": …} a line) or .txt (a text a line).'
        ),
    ] = None,
    field: Annotated[str, typer.Option(help="The text field of --input .jsonl lines.")] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write JSONL here instead of stdout.")
    ] = None,
    run_dir: RunDir = None,
) -> None:
    """Predict with a trained model: entity spans (ner) or labels (classification), as JSONL."""
    from verticalize.predict import read_texts

    texts = list(text or []) + (read_texts(input_, field) if input_ else [])
    if not texts:
        raise typer.BadParameter("give --text or --input")
    rows = api.predict(target, texts, run_dir)
    lines = (
        json.dumps({"text": t, **r}, ensure_ascii=False) for t, r in zip(texts, rows, strict=True)
    )
    if output:
        output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        console.print(f"wrote {len(rows)} predictions to {output}")
    else:
        for line in lines:
            sys.stdout.write(line + "\n")


@app.command()
def export(
    config: ConfigArg, run_dir: RunDir = None, set_: Sets = None, force: Force = False
) -> None:
    """Model card + merged model; ONNX and INT8 checked against the original (run/export/)."""
    result = api.export(config, run_dir, set_, force)
    _report([result])
    _export_summary(result.manifest)


def _export_summary(m: dict) -> None:
    if m.get("metric_drop") is not None:
        console.print(
            f"  int8 vs torch: {m['metric']} {m['metrics']['torch']:.4f} → "
            f"{m['metrics']['onnx_int8']:.4f} (drop {m['metric_drop']:+.4f}), latency ×"
            f"{m['latency_ratio']:.2f}, size ×{m['size_ratio']:.2f}"
        )
    reg = m.get("registry")
    if reg:
        console.print(
            f"  registry: {escape(reg['name'])} version {reg['version']} is "
            f"{reg.get('alias') or 'registered'} ({reg.get('tracking_uri', '')})"
        )
        promo = reg.get("promotion")
        if promo:
            said = "promoted to champion" if promo.get("promoted") else promo.get("reason", "")
            console.print(f"  promotion: {escape(str(said))}")


@app.command()
def runs(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A verticalize.yaml or a runs folder (default ./runs).", show_default=False
        ),
    ] = None,
    uri: Annotated[
        str | None, typer.Option("--uri", help="MLflow tracking URI (default: the runs' store).")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="One experiment (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout.")] = False,
) -> None:
    """Tracked trainings (MLflow), newest first: steps, train loss, best validation, test."""
    rows = api.runs(path, uri, experiment)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    _runs_table(rows)


def _runs_table(rows: list[dict]) -> None:
    from rich.table import Table

    def num(value, digits: int = 4) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    experiments = sorted({r["experiment"] for r in rows})
    table = Table(title=f"experiment {experiments[0]}" if len(experiments) == 1 else None)
    table.add_column("run", no_wrap=True)
    if len(experiments) > 1:
        table.add_column("experiment")
    for col in ("status", "started", "task", "model"):
        table.add_column(col)
    for col in ("steps", "train loss", "best val", "test", "train s"):
        table.add_column(col, justify="right")
    for r in rows:
        best = r["best_metric"] or ""
        main = r["main_metric"]
        cells = [r["run_name"]] + ([r["experiment"]] if len(experiments) > 1 else [])
        cells += [r["status"], r["started"][5:16], r["task"], f"{r['base_model']} ({r['method']})"]
        cells += [
            "" if r["steps"] is None else str(r["steps"]),
            num(r["train_loss"]),
            f"{best.removeprefix('val_')} {num(r['best_value'])}" if best else "",
            f"{main} {num(r['test'][main])}" if main in r["test"] else "",
            num(r["train_seconds"], 1),
        ]
        table.add_row(*(escape(str(c or "")) for c in cells))
    console.print(table if rows else "no tracked runs in this MLflow store")


TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db).",
    ),
]
registry_app = typer.Typer(no_args_is_help=True, help="Model registry: versions, aliases, gate.")
app.add_typer(registry_app, name="registry")


@registry_app.command("list")
def registry_list(
    name: Annotated[str | None, typer.Argument(help="Registered model (default: all).")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Versions with their aliases (champion / challenger) and test metric."""
    from rich.table import Table

    table = Table()
    for col in ("name", "version", "aliases", "metric", "value", "created"):
        table.add_column(col)
    for row in api.versions(name, tracking_uri):
        value = row.get("value")
        table.add_row(
            escape(str(row["name"])),
            str(row["version"]),
            ", ".join(row.get("aliases") or []),
            str(row.get("metric") or ""),
            "" if value is None else f"{value:.4f}",
            str(row.get("created") or ""),
        )
    console.print(table)


@registry_app.command("register")
def registry_register(config: ConfigArg, run_dir: RunDir = None, set_: Sets = None) -> None:
    """Register the run's exported model; promote it if it beats the champion by the margin."""
    entry = api.register_and_promote(config, run_dir, set_)
    _export_summary({"registry": entry})


@registry_app.command("promote")
def registry_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    metric: Annotated[str | None, typer.Option(help="Default: the model's main metric.")] = None,
    margin: Annotated[float, typer.Option(help="Absolute gain needed, e.g. 0.03.")] = 0.03,
    force: Annotated[bool, typer.Option("--force", help="Skip the margin.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Challenger becomes champion only if it beats it by --margin on the same test set."""
    r = api.promote(name, tracking_uri, metric, margin, force)
    console.print(f"[green]promoted[/green]: {escape(json.dumps(r, default=str))}")


@registry_app.command("rollback")
def registry_rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Give the champion alias back to the previous champion."""
    r = api.rollback(name, tracking_uri)
    console.print(f"[green]rolled back[/green]: {escape(json.dumps(r, default=str))}")


@app.command()
def serve(
    target: Annotated[
        str,
        typer.Argument(
            help="A run folder, a model folder, models:/name@alias, or a verticalize.yaml "
            "(its run, with its serve: section)."
        ),
    ],
    host: Annotated[str | None, typer.Option(help="Default: serve.host (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default: serve.port (8000).")] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option("--api-keys-file", help="Salted key hashes (`verticalize keys add`)."),
    ] = None,
    audit_log: Annotated[
        Path | None, typer.Option("--audit-log", help="W3C audit log (default <run>/serve/).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Take serve: settings from this YAML: a project's, or one holding only serve:.",
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(help="auto (onnx when the export published an INT8 model), torch or onnx."),
    ] = None,
    tracking_uri: TrackingUri = None,
    set_: Sets = None,
) -> None:
    """Start the HTTP service (OpenAI-compatible + /v1/classify, /v1/ner, /v1/embeddings)."""
    from verticalize.config import is_serve_only, load_serve_config

    yaml_target = target.endswith((".yaml", ".yml")) and Path(target).is_file()
    uri, cfg = tracking_uri, None
    if yaml_target or (config and not is_serve_only(config)):  # a project's YAML
        cfg = api.load(Path(target) if yaml_target else config, set_)
        settings = cfg.serve.model_copy(deep=True)
        if yaml_target:
            target = str(api.run_folder(cfg))
        if not uri and cfg.registry.tracking_uri:
            uri = cfg.registry.tracking_uri
    else:  # a serve-only YAML, or none: --set still applies (to the defaults)
        settings = load_serve_config(config, set_)
    for field, value in (
        ("host", host),
        ("port", port),
        ("api_keys_file", api_keys_file),
        ("audit_log", audit_log),
        ("runtime", runtime),
    ):
        if value is not None:
            setattr(settings, field, str(value) if isinstance(value, Path) else value)
    settings = type(settings).model_validate(settings.model_dump())  # re-check the overrides
    api.serve(target, settings, api.registry_uri(uri), project=cfg)


keys_app = typer.Typer(no_args_is_help=True, help="API keys for `verticalize serve`.")
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def keys_add(
    keys_file: Annotated[Path, typer.Argument(help="The keys file (created if missing).")],
    key_id: Annotated[str, typer.Option("--id", help="A name for the key (logged).")],
    role: Annotated[str, typer.Option(help="user, or admin (may hot-reload).")] = "user",
) -> None:
    """Create an API key: its salted hash goes to the file, the key is printed once."""
    key = api.add_api_key(keys_file, key_id, role)
    console.print(f"key '{escape(key_id)}' added to {keys_file}; give it to the client now:")
    sys.stdout.write(key + "\n")


feedback_app = typer.Typer(no_args_is_help=True, help="Feedback collected by the service.")
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    feedback_dir: Annotated[
        Path, typer.Argument(help="serve.feedback_dir (<run>/serve/feedback).")
    ],
    output: Annotated[Path, typer.Option("--output", help="Training records (.jsonl).")],
    task: Annotated[str, typer.Option(help="classification, ner or generation.")],
) -> None:
    """Corrections as new training records: add the file to data.sources and re-run."""
    n = api.export_feedback(feedback_dir, output, task)
    console.print(f"wrote {n} training records to {output}")


@app.command("console")
def console_(
    folder: Annotated[
        Path, typer.Argument(help="The folder whose verticalize.yaml projects the console shows.")
    ] = Path("."),
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but localhost needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the access token from this file (else one is made and printed when not on localhost)."
        ),
    ] = None,
) -> None:
    """The web console: create, run, watch, review, compare, promote and try models in the browser."""
    from verticalize.web.server import run_console

    run_console(folder, host, port, token_file)


def main() -> None:
    """Entry point: user errors are one message and a non-zero exit, never a traceback."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # keep the terminal for our own progress and results
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        if world_size() > 1 and sys.argv[1:2] != ["train"]:
            raise ConfigError(
                f"`verticalize {' '.join(sys.argv[1:2])}` was started in {world_size()} processes "
                "(torchrun / accelerate launch); only `verticalize train` runs data-parallel. "
                "Fix: launch `verticalize train <yaml>` that way, or use `verticalize run <yaml> "
                "--nproc N`, which runs the other stages once."
            )
        if not is_main_process():  # N processes print as one: rank 0 speaks
            console.quiet = True
        code = app(standalone_mode=False)
        if code == 130:  # typer turns Ctrl+C (SIGINT) into a return value, not an exception
            raise KeyboardInterrupt
        leave_process_group(wait=True)
        if isinstance(code, int) and code:
            sys.exit(code)
    except VerticalizeError as e:
        leave_process_group(wait=False)
        if is_main_process():  # N processes under torchrun: one message, not N
            console.print("[red]error:[/red]", escape(str(e)), soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        resumes = sys.argv[1:2] in (["run"], ["train"])
        console.print(
            "interrupted"
            + ("; `verticalize run` resumes from the last checkpoint" if resumes else "")
        )
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        leave_process_group(wait=False)
        # a bug: one line here; the traceback, without locals or data, in a file
        log = write_crash_log(e, _crash_folder(sys.argv[1:]), _crash_mask(sys.argv[1:]))
        console.print(escape(crash_line(e, log)), soft_wrap=True, highlight=False)
        sys.exit(70)  # EX_SOFTWARE


def _crash_mask(argv: list[str]) -> Callable[[str], str]:
    """PII masking for a crash log's messages: every built-in kind, plus the custom kinds
    (data.pii.custom) of the project the command names when its YAML loads. A message that
    cannot be masked is withheld."""
    custom = None
    try:
        from verticalize.data.pii import resolve_pii_paths
        from verticalize.data.pii_custom import custom_detectors

        yaml = _yaml_arg(argv)
        if yaml is not None:
            cfg = api.load(yaml)
            custom = custom_detectors(
                resolve_pii_paths(cfg.data.pii, cfg.source_file.parent).custom
            )
    except Exception:  # a broken config may be the crash itself: the built-in kinds still apply
        custom = None

    def mask(text: str) -> str:
        try:
            from verticalize.serve.security import mask_for_log

            return mask_for_log(text, custom)
        except Exception:  # the crash handler must not crash, nor leak what it cannot mask
            return "(message withheld: PII masking failed)"

    return mask


def _yaml_arg(argv: list[str]) -> str | None:
    """The command's verticalize.yaml argument, when it names a file."""
    return next((a for a in argv[1:] if a.endswith((".yaml", ".yml")) and Path(a).is_file()), None)


def _crash_folder(argv: list[str]) -> Path | None:
    """The run folder of the failed command, when its arguments name one that exists."""
    run_dir = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--run-dir"), None)
    if run_dir is None:
        run_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("--run-dir=")), None)
    if run_dir is not None:
        return Path(run_dir) if Path(run_dir).is_dir() else None
    yaml = _yaml_arg(argv)
    try:
        folder = api.run_folder(yaml) if yaml else None
    except Exception:  # the config itself may be what is broken: then no run folder
        return None
    return folder if folder is not None and folder.is_dir() else None
