"""Write tests/golden/<task>.json from fresh runs of the shortened examples.

Regenerate ONLY when a change of behaviour is intended (a new default, a fixed bug in a loss,
a new manifest field, another file in the run folder) — never to make a red
tests/test_golden.py green after a refactor that should have changed nothing. Say in the
commit message which golden values changed and why.

Run it against the code whose behaviour is to be pinned, from the repository root:

    python tests/golden/regenerate.py                    # every task
    python tests/golden/regenerate.py ner generation     # some
    PYTHONPATH=/path/to/other/checkout/src python tests/golden/regenerate.py

The runs go through the `verticalize` CLI exactly as tests/test_golden.py does (a PYTHONPATH
set here reaches the CLI, so another checkout's package can be pinned). Run it twice and
diff: the values must not move.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # conftest and test_golden, as pytest imports them

from test_golden import FIRST_STEPS, TASKS, golden_path, observe, run_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", help=f"some of {', '.join(TASKS)}; default: all")
    names = parser.parse_args().tasks or list(TASKS)
    if unknown := set(names) - set(TASKS):
        parser.error(f"unknown task {sorted(unknown)}; choose from {', '.join(TASKS)}")
    for name in names:
        task = TASKS[name]
        with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as tmp:
            run_dir = Path(tmp) / "run"
            run_task(task, run_dir)
            seen = observe(task, run_dir)
            version = json.loads((run_dir / "eval/report.json").read_text())["verticalize_version"]
        golden = {
            "example": task.example,
            "sets": list(task.sets),
            "first_steps": FIRST_STEPS,
            "verticalize_version": version,
            **seen,
        }
        path = golden_path(task)
        path.write_text(json.dumps(golden, indent=2) + "\n", encoding="utf-8")
        print(f"{name}: wrote {path}")


if __name__ == "__main__":
    main()
