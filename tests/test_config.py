"""Every bad-input case is one message naming file:line, field, bad value and fix; no traceback."""

import json

from conftest import run_cli, write

from verticalize.config import load_config


def _fails(result, code: int, *needles: str) -> str:
    out = result.stderr + result.stdout
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    flat = " ".join(out.split())
    for needle in needles:
        assert needle in flat, f"{needle!r} not in {flat!r}"
    return flat


def test_unknown_key_names_line_and_suggests(csv_project, tmp_path):
    cfg = csv_project("train:\n  epoch: 3\n")
    r = run_cli("data", str(cfg))
    line = cfg.read_text().splitlines().index("  epoch: 3") + 1
    _fails(
        r,
        2,
        f"verticalize.yaml:{line}",
        "train.epoch",
        "unknown key 'epoch'",
        "did you mean 'epochs'",
    )


def test_wrong_type_names_value_and_fix(csv_project):
    cfg = csv_project("train:\n  lr: fast\n")
    _fails(run_cli("data", str(cfg)), 2, "train.lr", "'fast'", "give a number")


def test_wrong_choice_lists_allowed_values(csv_project):
    cfg = csv_project("model:\n  method: qlora\n")
    _fails(
        run_cli("train", str(cfg)),
        2,
        "model.method",
        "'qlora'",
        "'lora', 'prompt_tuning' or 'prefix_tuning'",
    )


def test_missing_data_file(tmp_path):
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: x
        data:
          sources:
            - path: nowhere.csv
        """,
    )
    _fails(
        run_cli("data", str(cfg)),
        2,
        "verticalize.yaml:4",
        "data.sources[0].path",
        "'nowhere.csv' not found",
        "Fix:",
    )


def test_missing_package_asset_gives_pip_command(tmp_path):
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: x
        data:
          sources:
            - path: pkg:no_such_asset_pkg/data.csv
        """,
    )
    _fails(run_cli("data", str(cfg)), 2, "no_such_asset_pkg", "pip install --no-deps")


def test_target_label_not_in_label_set(csv_project):
    cfg = csv_project("eval:\n  targets:\n    - {metric: 'f1:postive', target: 0.5}\n")
    _fails(
        run_cli("eval", str(cfg)),
        2,
        "eval.targets[0].metric",
        "label 'postive' is not in the label set ['neg', 'pos']",
    )


def test_label_bins_outside_label_set(csv_project):
    cfg = csv_project(data_extra="  label_bins: {neg: [0, 4], good: [5, 9]}\n")
    _fails(
        run_cli("data", str(cfg)),
        2,
        "verticalize.yaml:6",
        "data.label_bins.good",
        "'good' is not in the label set",
    )


def test_record_label_not_in_set_strict_mode_names_file_and_line(csv_project, tmp_path):
    rows = [("fine text one", "pos"), ("fine text two", "neg"), ("odd text", "maybe")] * 4
    cfg = csv_project(rows=rows, data_extra="  on_bad_record: error\n")
    _fails(
        run_cli("data", str(cfg), "--run-dir", str(tmp_path / "run")),
        3,
        "data.csv:4",
        "field 'label'",
        "'maybe'",
        "label not in set",
        "Fix:",
    )


def test_record_label_not_in_set_is_quarantined_by_default(csv_project, tmp_path):
    rows = [(f"fine text {i}", "pos" if i % 2 else "neg") for i in range(20)] + [("odd", "maybe")]
    cfg = csv_project(rows=rows)
    r = run_cli("data", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "run/data/manifest.json").read_text())
    assert manifest["dropped"] == {"label_not_in_set": 1}
    q = [json.loads(x) for x in (tmp_path / "run/data/quarantine.jsonl").read_text().splitlines()]
    assert q[0]["reason"] == "label_not_in_set" and q[0]["line"] == 22 and q[0]["value"] == "maybe"


def test_invalid_yaml_names_line(tmp_path):
    cfg = write(tmp_path / "verticalize.yaml", "name: x\ndata:\n  sources: [\n")
    _fails(run_cli("data", str(cfg)), 2, "verticalize.yaml:", "not valid YAML")


def test_missing_config_file(tmp_path):
    _fails(
        run_cli("run", str(tmp_path / "absent.yaml")),
        2,
        "config file not found",
        "verticalize init",
    )


def test_overrides_apply_and_are_validated(csv_project):
    cfg = load_config(csv_project(), ["train.epochs=7", "data.sources.0.sample=5"])
    assert cfg.train.epochs == 7 and cfg.data.sources[0].sample == 5


def test_stage_before_its_input_exists_says_what_to_run(csv_project, tmp_path):
    cfg = csv_project()
    _fails(
        run_cli("eval", str(cfg), "--run-dir", str(tmp_path / "r")),
        6,
        "'data' stage has not finished",
        "verticalize data",
    )
