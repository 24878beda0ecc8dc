"""The README's three commands work as written (the example shortened, the tests not re-run)."""

import json
import re
import shlex
import subprocess

import pytest
from conftest import ROOT, VERTICALIZE, run_cli, shortened

README = (ROOT / "README.md").read_text(encoding="utf-8")


def three_commands() -> list[str]:
    block = re.search(r"## Three commands\s+```bash\n(.*?)```", README, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_shows_setup_run_and_test_commands():
    setup, run, test = three_commands()
    assert setup == "bash scripts/setup.sh" and (ROOT / "scripts/setup.sh").is_file()
    assert run.startswith("verticalize run examples/")
    ci = (ROOT / ".ci/run").read_text()
    assert "bash scripts/setup.sh" in ci and test in ci  # CI runs exactly the README's test command


@pytest.mark.slow
def test_readme_example_command_runs_shortened(tmp_path):
    _, run, _ = three_commands()
    program, *args = shlex.split(run)
    assert program == "verticalize"
    result = run_cli(
        *args,
        *shortened(
            tmp_path / "run",
            "data.sources.0.sample=40",
            "data.sources.1.sample=30",
            "train.epochs=1",
            "model.max_length=32",
        ),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "run/eval/report.json").read_text())
    assert report["task"] == "classification" and "tfidf_lr" in report["baselines"]
    assert (tmp_path / "run/model/config.json").is_file()
    strongest = report["strongest_baseline"]["name"]
    assert f"{strongest}, the strongest baseline" in report["verdict"]
    assert "tfidf_lr" in report["verdict"]
    printed = " ".join(result.stderr.split())
    assert f"{strongest}, the strongest baseline" in printed  # the verdict is printed
    exported = json.loads((tmp_path / "run/export/manifest.json").read_text())
    assert exported["published"] and exported["metric"] == "macro_f1"
    assert (tmp_path / "run/export/model/README.md").is_file()  # the model card
    assert (tmp_path / "mlflow.db").is_file()  # registered next to the run folder
    listed = run_cli("runs", str(tmp_path), "--json", cwd=ROOT)  # the run was tracked there too
    assert listed.returncode == 0, listed.stderr[-2000:]
    (row,) = json.loads(listed.stdout)
    assert row["task"] == "classification" and row["steps"] > 0 and row["test"]


def test_every_command_has_help():
    for cmd in (
        *([], ["init"], ["data"], ["train"], ["eval"], ["run"], ["predict"], ["tune"]),
        *(["export"], ["serve"], ["registry"], ["registry", "promote"], ["registry", "rollback"]),
        *(["registry", "list"], ["keys", "add"], ["feedback", "export"], ["plan"], ["runs"]),
    ):
        r = subprocess.run([VERTICALIZE, *cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "Usage" in r.stdout, (cmd, r.stderr)


def test_init_writes_a_config_that_validates(tmp_path):
    r = subprocess.run(
        [VERTICALIZE, "init", str(tmp_path / "proj")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    (tmp_path / "proj/data").mkdir()
    (tmp_path / "proj/data/train.csv").write_text("text,label\nok,positive\n")
    from verticalize.config import load_config

    cfg = load_config(tmp_path / "proj/verticalize.yaml")
    assert cfg.name == "proj" and cfg.model.base == "all-MiniLM-L6-v2"
    again = subprocess.run(
        [VERTICALIZE, "init", str(tmp_path / "proj")], capture_output=True, text=True
    )
    assert again.returncode == 2 and "already exists" in again.stderr
