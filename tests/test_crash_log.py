"""An unexpected error in the CLI (a bug, not a user error) prints one line and writes its
traceback, without local variables or record contents, to <run folder>/errors/<time>.log."""

import os
import subprocess
from pathlib import Path

from conftest import ROOT, VERTICALIZE, write

from verticalize.errors import crash_traceback, write_crash_log

SECRET = "ZEBRA-7731-PATIENT-SECRET"

# a third-party task plugin with a bug: its label parser converts the record's text to int,
# so the ValueError carries the text, and the text sits in local variables of every frame
PLUGIN = """
from verticalize.plugins import TaskPlugin


def parse_label(row, src, cfg, section=None):
    text = row["text"]
    return str(int(text)), None


def _never(*args, **kwargs):
    raise AssertionError("not reached")


plugin = TaskPlugin(
    name="crashy",
    description="a task whose label parser has a bug",
    default_base="tfidf",
    main_metric="accuracy",
    default_stop_metric="accuracy",
    summary_metrics=["accuracy"],
    parse_label=parse_label,
    train=_never,
    evaluate=_never,
)
"""


def _plugin(tmp_path: Path) -> Path:
    root = tmp_path / "plugin"
    write(root / "verticalize_crashy" / "__init__.py", PLUGIN)
    dist = root / "verticalize_crashy-0.1.dist-info"
    write(dist / "METADATA", "Metadata-Version: 2.1\nName: verticalize-crashy\nVersion: 0.1\n")
    write(dist / "entry_points.txt", "[verticalize.tasks]\ncrashy = verticalize_crashy:plugin\n")
    return root


def test_an_internal_error_prints_one_line_and_logs_no_data(tmp_path):
    data = tmp_path / "notes.jsonl"
    data.write_text(f'{{"text": "patient note {SECRET}", "label": "x"}}\n', encoding="utf-8")
    yaml_path = write(
        tmp_path / "verticalize.yaml",
        """
        name: crashy-run
        task: crashy
        data:
          sources:
            - path: notes.jsonl
        """,
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "300",
        "PYTHONPATH": os.pathsep.join([str(_plugin(tmp_path)), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [VERTICALIZE, "data", str(yaml_path), "--run-dir", str(run_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 70, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and SECRET not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("internal error: ValueError"), lines
    logs = list((run_dir / "errors").glob("*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    text = logs[0].read_text("utf-8")
    assert "Traceback (most recent call last)" in text and "parse_label" in text
    assert "builtins.ValueError: invalid literal for int() with base 10: '…'" in text
    assert SECRET not in text and "patient note" not in text
    assert oct(logs[0].stat().st_mode & 0o777) == "0o600"


def test_the_log_has_frames_and_chained_errors_but_no_quoted_values(tmp_path):
    def lookup(record):
        try:
            return record["missing"]
        except KeyError as e:
            raise RuntimeError(f"no field in {record['text']!r}") from e

    try:
        lookup({"text": SECRET})
    except RuntimeError as e:
        error = e
    text = crash_traceback(error)
    assert text.count("Traceback (most recent call last)") == 2
    assert "builtins.KeyError: '…'" in text and "builtins.RuntimeError: no field in '…'" in text
    assert "in lookup" in text and SECRET not in text
    # no run folder: the log goes to the temp folder
    path = write_crash_log(error, None)
    try:
        assert path.parent.name == "verticalize" and SECRET not in path.read_text("utf-8")
    finally:
        path.unlink()


def test_nothing_prints_local_variables():
    from verticalize.cli import app

    assert app.pretty_exceptions_show_locals is False
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "src" / "verticalize").rglob("*.py")
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if "show_locals=True" in line.replace(" ", "") or "rich.traceback" in line
    ]
    assert hits == []
