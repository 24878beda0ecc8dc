"""The `verticalize` command: each command is a thin call into a stage's run()."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from verticalize import api
from verticalize.console import console
from verticalize.errors import VerticalizeError
from verticalize.runfolder import StageResult

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
    config: ConfigArg, run_dir: RunDir = None, set_: Sets = None, force: Force = False
) -> None:
    """Ingest, clean, deduplicate and split the data (run/data/)."""
    _report([api.data(config, run_dir, set_, force)])


@app.command()
def train(
    config: ConfigArg, run_dir: RunDir = None, set_: Sets = None, force: Force = False
) -> None:
    """Fine-tune the base model; resumes from the last checkpoint (run/train/, run/model/)."""
    _report([api.train(config, run_dir, set_, force)])


@app.command("eval")
def eval_(
    config: ConfigArg, run_dir: RunDir = None, set_: Sets = None, force: Force = False
) -> None:
    """Evaluate the model and the baselines on the test split (run/eval/report.*)."""
    _report([api.evaluate(config, run_dir, set_, force)])


@app.command()
def run(config: ConfigArg, run_dir: RunDir = None, set_: Sets = None, force: Force = False) -> None:
    """Run the whole pipeline: data → train → eval, skipping stages that are up to date."""
    results = api.run(config, run_dir, set_, force)
    _report(results)
    report = Path(results[-1].outputs.get("report_json", "")) if results[-1].outputs else None
    if report and report.is_file():
        body = json.loads(report.read_text())
        console.print(f"[bold]{body['verdict']}[/bold]")


def main() -> None:
    """Entry point: user errors are one message and a non-zero exit, never a traceback."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # keep the terminal for our own progress and results
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        app(standalone_mode=False)
    except VerticalizeError as e:
        console.print("[red]error:[/red]", escape(str(e)), soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted; `verticalize run` resumes from the last checkpoint")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
