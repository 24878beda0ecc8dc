import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["VERTICALIZE_QUIET"] = "1"

ROOT = Path(__file__).resolve().parents[1]
# the console script as a user types it; next to the interpreter when PATH lacks it
VERTICALIZE = shutil.which("verticalize") or str(Path(sys.executable).parent / "verticalize")


def run_cli(
    *args: str, cwd: Path | None = None, timeout: int = 1500
) -> subprocess.CompletedProcess:
    """Run the real `verticalize` console script offline and quiet, as a user would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VERTICALIZE_QUIET": "1", "COLUMNS": "200"}
    return subprocess.run(
        [VERTICALIZE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def shortened(run_dir: Path, *sets: str) -> list[str]:
    """CLI options that put the run in `run_dir` and override YAML fields to make it small."""
    options = ["--run-dir", str(run_dir)]
    for item in sets:
        options += ["--set", item]
    return options


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture(scope="module", autouse=True)
def _free_module_disk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Delete what a test module's shared fixtures wrote once the module is done.

    Trained models, exports and checkpoints add up to tens of GB over the suite, more than a
    fresh CI disk holds. Folders stay when a test of the module failed, to be looked at, and
    session fixtures' folders (named "session-…") stay for the modules after."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for path in set(base.iterdir()) - before:
            if not path.name.startswith("session-"):
                shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def csv_project(tmp_path: Path):
    """A small project: a CSV with two labels and a YAML pointing at it.

    `data_extra` lines go under `data:` (give them two spaces), `extra` at the top level."""

    def make(
        extra: str = "", rows: list[tuple[str, str]] | None = None, data_extra: str = ""
    ) -> Path:
        rows = rows or [
            (
                f"review number {i} says it is {'good' if i % 2 else 'bad'}",
                "pos" if i % 2 else "neg",
            )
            for i in range(30)
        ]
        lines = ["text,label"] + [f'"{t}",{lab}' for t, lab in rows]
        (tmp_path / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        body = "name: tiny\ndata:\n  sources:\n    - path: data.csv\n  labels: [neg, pos]\n"
        return write(tmp_path / "verticalize.yaml", body + data_extra + extra)

    return make


@pytest.fixture(scope="session")
def console_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A console folder with one small real project (drug reviews, MiniLM, 1 epoch) already
    run end to end by the CLI, registry on: shared by the console tests, which must not
    change its run (copy it for that)."""
    from console_util import make_project

    root = tmp_path_factory.mktemp("session-console")
    folder = make_project(root, "reviews", registry=True)
    done = run_cli("run", "verticalize.yaml", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return root
