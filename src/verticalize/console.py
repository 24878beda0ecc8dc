"""Terminal output: one rich console (stderr), the progress bar style every stage uses, and
the wall time of each step."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, highlight=False)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        disable=os.environ.get("VERTICALIZE_QUIET") == "1",
    )


class StepTimes:
    """Wall seconds of named steps, printed as each ends (`eval: cv took 81.2 s`) and kept
    for the report's `timing`; a step that runs again adds to its total."""

    def __init__(self, stage: str):
        self.stage, self.seconds = stage, {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        tick = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - tick
            self.seconds[name] = round(self.seconds.get(name, 0.0) + spent, 2)
            console.print(f"[dim]{self.stage}: {name} took {spent:.1f} s[/dim]")
