"""Model registry on a real MLflow sqlite store: register, promotion gate, rollback, resolve.

Run folders are fabricated (the export stage is tested in test_export.py): each holds a real,
loadable Hugging Face classifier in export/model/. The model is a 1-layer, 32-wide BERT built
from MiniLM's config and tokenizer (random weights, ~4 MB): the registry copies and tags model
files without reading weights, so a 90 MB MiniLM copy per version would only cost time.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from verticalize import registry
from verticalize.config import Config
from verticalize.errors import RegistryError
from verticalize.mlflow_store import open_client
from verticalize.models.load import load_tokenizer, resolve_base
from verticalize.runfolder import RunFolder, write_json_atomic

LABELS = ["neg", "pos"]
TEST_A, TEST_B = "a" * 64, "b" * 64


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A real sequence classifier folder: MiniLM's tokenizer and config, 1 layer, width 32."""
    folder = tmp_path_factory.mktemp("tiny-model")
    base = BertConfig.from_pretrained(resolve_base("all-MiniLM-L6-v2"))
    config = BertConfig(
        **{
            **base.to_dict(),
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "num_labels": len(LABELS),
            "id2label": dict(enumerate(LABELS)),
            "label2id": {lab: i for i, lab in enumerate(LABELS)},
        }
    )
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    load_tokenizer("all-MiniLM-L6-v2").save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """One freshly created (schema-migrated) MLflow database, copied into each test: creating
    one takes seconds, copying the file is instant and keeps the tests independent."""
    root = tmp_path_factory.mktemp("template")
    client = open_client(registry.tracking_uri(None, root), create=True)
    client.search_registered_models()
    return root / "mlflow.db"


@pytest.fixture
def runs(tmp_path, migrated_db, monkeypatch) -> Path:
    """runs/ with a ready database; the CWD is an empty folder that must stay empty."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("VERTICALIZE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copy(migrated_db, root / "mlflow.db")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return root


def uri_of(runs: Path) -> str:
    return f"sqlite:///{runs / 'mlflow.db'}"


def make_run(
    runs: Path,
    tiny_model: Path,
    run: str,
    macro_f1: float,
    test_sha256: str = TEST_A,
    name: str = "drug-reviews",
    published: bool = True,
    export: bool = True,
) -> tuple[Config, RunFolder]:
    """A finished run folder (data, train, eval, export) whose model scored `macro_f1` on the
    test set hashed `test_sha256`; the train fingerprint is derived from the run name."""
    cfg = Config.model_validate(
        {
            "name": name,
            "domain": "medicine",
            "run_dir": str(runs / run),
            "data": {"sources": [{"path": "reviews.csv"}], "labels": LABELS},
        }
    )
    folder = RunFolder(cfg)
    train_fp, data_fp = f"train-{run}".ljust(16, "0"), "data-fingerprint"
    metrics = {
        "accuracy": macro_f1 + 0.01,
        "macro_f1": macro_f1,
        "ece": round(1 - macro_f1, 4),  # lower is better
        "per_class": {"neg": {"f1": macro_f1 - 0.02}, "pos": {"f1": macro_f1 + 0.02}},
        "confusion_matrix": {"labels": LABELS, "matrix": [[1, 0], [0, 1]]},
    }
    write_json_atomic(
        folder.manifest_path("data"),
        {"complete": True, "fingerprint": data_fp, "out": 100},
    )
    write_json_atomic(
        folder.manifest_path("train"),
        {"complete": True, "fingerprint": train_fp, "base_model": "all-MiniLM-L6-v2"},
    )
    write_json_atomic(folder.stage_dir("eval") / "report.json", {"model": {"metrics": metrics}})
    (folder.stage_dir("eval") / "report.html").write_text("<html>report</html>")
    if not export:
        return cfg, folder
    model_dir = folder.stage_dir("export") / "model"
    shutil.copytree(tiny_model, model_dir, dirs_exist_ok=True)
    card = {
        "task": "classification",
        "name": name,
        "domain": "medicine",
        "labels": LABELS,
        "base_model": "all-MiniLM-L6-v2",
        "version": f"{name}-{train_fp[:8]}",
        "metric": "macro_f1",
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
        "test_sha256": test_sha256,
        "data_fingerprint": data_fp,
        "train_fingerprint": train_fp,
        "onnx": None,
        "onnx_int8": None,
        "published": published,
    }
    write_json_atomic(model_dir / "verticalize.json", card)
    scores = {"torch": macro_f1, "onnx": macro_f1, "onnx_int8": macro_f1 - 0.1}
    write_json_atomic(
        folder.manifest_path("export"),
        {
            "complete": True,
            "published": published,
            "reason": None if published else "int8 lost 0.1000 macro_f1",
            "metric": "macro_f1",
            "metrics": scores,
            "metric_drop": 0.1 if not published else 0.0,
        },
    )
    return cfg, folder


def register(runs, tiny_model, run, macro_f1, **kw) -> dict:
    return registry.register(*make_run(runs, tiny_model, run, macro_f1, **kw))


# ---------------------------------------------------------------- tracking URI


def test_tracking_uri_order_and_nothing_created(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = Config.model_validate({"name": "m", "data": {"sources": [{"path": "x.csv"}]}})
    root = tmp_path / "runs"
    assert registry.tracking_uri(cfg, root) == f"sqlite:///{root.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert registry.tracking_uri(cfg, root) == "http://127.0.0.1:5999"
    cfg.registry.tracking_uri = "sqlite:////elsewhere/db.sqlite"
    assert registry.tracking_uri(cfg, root) == "sqlite:////elsewhere/db.sqlite"
    assert not root.exists()  # computing a URI creates nothing


def test_reads_on_a_missing_registry_create_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    assert registry.alias_version("m", "champion", uri) is None
    assert registry.list_versions(None, uri) == []
    with pytest.raises(RegistryError, match="no model registry"):
        registry.resolve("models:/m@champion", uri)
    with pytest.raises(RegistryError, match="registry register"):
        registry.promote("m", uri)
    assert not (tmp_path / "none").exists()


# ---------------------------------------------------------------- register


def test_register_champion_then_challenger_idempotent_with_lineage(runs, tiny_model):
    first = register(runs, tiny_model, "v1", 0.80)
    assert first | {"tracking_uri": None} == {
        "name": "drug-reviews",
        "version": "1",
        "alias": "champion",
        "metric": "macro_f1",
        "value": 0.80,
        "test_sha256": TEST_A,
        "new": True,
        "tracking_uri": None,
    }
    assert first["tracking_uri"] == uri_of(runs)
    again = register(runs, tiny_model, "v1", 0.80)
    assert (again["version"], again["alias"], again["new"]) == ("1", "champion", False)
    second = register(runs, tiny_model, "v2", 0.81)
    assert (second["version"], second["alias"], second["new"]) == ("2", "challenger", True)

    rows = registry.list_versions("drug-reviews", uri_of(runs))
    assert [(r["version"], r["aliases"], r["value"]) for r in rows] == [
        ("1", ["champion"], 0.80),
        ("2", ["challenger"], 0.81),
    ]
    assert rows[1]["run_dir"] == str(runs / "v2") and rows[1]["test_sha256"] == TEST_A
    assert rows[0]["metric"] == "macro_f1" and rows[0]["created"].startswith("20")

    client = MlflowClient(uri_of(runs), registry_uri=uri_of(runs))
    mv = client.get_model_version("drug-reviews", "2")
    assert mv.tags["train_fingerprint"] == "train-v200000000"
    assert mv.tags["data_fingerprint"] == "data-fingerprint"
    assert mv.tags["base_model"] == "all-MiniLM-L6-v2"
    assert json.loads(mv.tags["metrics"])["f1:pos"] == pytest.approx(0.83)
    run = client.get_run(mv.run_id)
    assert run.data.params["name"] == "drug-reviews"
    assert run.data.params["data.sources.0.path"] == "reviews.csv"
    assert run.data.metrics["macro_f1"] == pytest.approx(0.81)
    assert run.data.metrics["export.onnx_int8"] == pytest.approx(0.71)
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert logged == {"data", "train", "eval", "export", "config", "model"}
    evals = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert evals == {"eval/report.json", "eval/report.html"}
    # artifacts sit next to the database, and nothing lands in the working folder
    assert run.info.artifact_uri.startswith((runs / "mlartifacts").as_uri())
    assert list(Path.cwd().iterdir()) == []


def test_register_needs_a_finished_published_export(runs, tiny_model):
    cfg, folder = make_run(runs, tiny_model, "v1", 0.8, export=False)
    with pytest.raises(RegistryError, match="verticalize export") as err:
        registry.register(cfg, folder)
    assert err.value.exit_code == 9
    cfg, folder = make_run(runs, tiny_model, "v2", 0.8, published=False)
    with pytest.raises(RegistryError, match="not published") as err:
        registry.register(cfg, folder)
    assert "onnx_int8 0.7000" in str(err.value) and "0.1000" in str(err.value)
    assert registry.list_versions(None, uri_of(runs)) == []


def test_register_unknown_metric_names_what_was_measured(runs, tiny_model):
    cfg, folder = make_run(runs, tiny_model, "v1", 0.8)
    cfg.registry.metric = "rouge_l"
    with pytest.raises(RegistryError, match="rouge_l.*macro_f1"):
        registry.register(cfg, folder)


# ---------------------------------------------------------------- promotion gate


def test_promote_below_margin_is_refused_and_champion_stays(runs, tiny_model):
    uri = uri_of(runs)
    register(runs, tiny_model, "v1", 0.80)
    register(runs, tiny_model, "v2", 0.82)
    with pytest.raises(RegistryError) as err:
        registry.promote("drug-reviews", uri, margin=0.03)
    message = str(err.value)
    assert err.value.exit_code == 9
    assert "0.8200" in message and "0.8000" in message and "0.03" in message
    assert ">= 0.8300" in message and "--force" in message
    assert registry.alias_version("drug-reviews", "champion", uri) == "1"
    assert registry.alias_version("drug-reviews", "challenger", uri) == "2"


def test_promote_by_margin_then_rollback_restores_previous_champion(runs, tiny_model):
    uri = uri_of(runs)
    register(runs, tiny_model, "v1", 0.80)
    register(runs, tiny_model, "v2", 0.83)  # exactly the margin: >= passes
    result = registry.promote("drug-reviews", uri, margin=0.03)
    assert result["promoted"] and result["metric"] == "macro_f1"
    assert result["before"] == {"version": "1", "value": 0.80}
    assert result["after"] == {"version": "2", "value": 0.83}
    assert registry.alias_version("drug-reviews", "champion", uri) == "2"
    assert registry.alias_version("drug-reviews", "challenger", uri) is None

    register(runs, tiny_model, "v3", 0.90)
    registry.promote("drug-reviews", uri)
    assert registry.alias_version("drug-reviews", "champion", uri) == "3"

    back = registry.rollback("drug-reviews", uri)
    assert back["before"]["version"] == "3" and back["after"] == {"version": "2", "value": 0.83}
    assert registry.alias_version("drug-reviews", "champion", uri) == "2"
    assert registry.alias_version("drug-reviews", "rolled_back", uri) == "3"
    client = MlflowClient(uri, registry_uri=uri)
    assert (
        "returned to version 2" in client.get_model_version("drug-reviews", "3").tags["rolled_back"]
    )
    registry.rollback("drug-reviews", uri)
    assert registry.alias_version("drug-reviews", "champion", uri) == "1"
    with pytest.raises(RegistryError, match="no earlier champion") as err:
        registry.rollback("drug-reviews", uri)
    assert err.value.exit_code == 9
    assert registry.alias_version("drug-reviews", "champion", uri) == "1"


def test_force_skips_the_margin_but_not_the_test_set(runs, tiny_model):
    uri = uri_of(runs)
    register(runs, tiny_model, "v1", 0.80)
    register(runs, tiny_model, "v2", 0.95, test_sha256=TEST_B)
    for force in (False, True):
        with pytest.raises(RegistryError, match="different test sets"):
            registry.promote("drug-reviews", uri, force=force)
    assert registry.alias_version("drug-reviews", "champion", uri) == "1"

    register(runs, tiny_model, "v3", 0.79)  # worse, same test set: only --force promotes
    result = registry.promote("drug-reviews", uri, force=True)
    assert result["forced"] and result["after"]["version"] == "3"
    assert result["gain"] == pytest.approx(-0.01)


def test_promote_on_another_metric_and_missing_challenger(runs, tiny_model):
    uri = uri_of(runs)
    register(runs, tiny_model, "v1", 0.80)
    with pytest.raises(RegistryError, match="no challenger"):
        registry.promote("drug-reviews", uri)
    register(runs, tiny_model, "v2", 0.84)
    result = registry.promote("drug-reviews", uri, metric="f1:neg", margin=0.03)
    assert result["before"]["value"] == pytest.approx(0.78)
    assert result["after"]["value"] == pytest.approx(0.82)
    register(runs, tiny_model, "v3", 0.86)  # ece 0.14: lower, but not by 0.03
    with pytest.raises(RegistryError, match=r"ece 0\.1400.*\(0\.1600\).*<= 0\.1300"):
        registry.promote("drug-reviews", uri, metric="ece", margin=0.03)
    result = registry.promote("drug-reviews", uri, metric="ece", margin=0.02)
    assert (result["before"]["version"], result["after"]["version"]) == ("2", "3")
    with pytest.raises(RegistryError, match="does not exist.*'drug-reviews'"):
        registry.promote("no-such-model", uri)


# ---------------------------------------------------------------- resolve


def test_resolve_gives_a_folder_transformers_loads(runs, tiny_model):
    uri = uri_of(runs)
    register(runs, tiny_model, "v1", 0.80)
    register(runs, tiny_model, "v2", 0.81)
    folder, label = registry.resolve("models:/drug-reviews@champion", uri)
    assert label == "drug-reviews/1"
    assert folder.is_relative_to(runs / "mlartifacts")  # the registered copy, not the run's
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(
            **tok(["great drug", "awful side effects"], return_tensors="pt", padding=True)
        )
    assert logits.logits.shape == (2, 2)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert json.loads((folder / "verticalize.json").read_text())["train_fingerprint"] == (
        "train-v100000000"
    )
    folder2, label2 = registry.resolve("models:/drug-reviews/2", uri)
    assert label2 == "drug-reviews/2" and folder2 != folder


def test_resolve_errors_list_what_exists(runs, tiny_model):
    uri = uri_of(runs)
    register(runs, tiny_model, "v1", 0.80)
    with pytest.raises(RegistryError, match="no alias 'prod'.*@champion → 1"):
        registry.resolve("models:/drug-reviews@prod", uri)
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: 1 \(champion\)\)"):
        registry.resolve("models:/drug-reviews/7", uri)
    with pytest.raises(RegistryError, match="'drug-reviewz' does not exist.*'drug-reviews'"):
        registry.resolve("models:/drug-reviewz@champion", uri)
    with pytest.raises(RegistryError, match="models:/<name>@<alias>"):
        registry.resolve("models:/drug-reviews", uri)
    with pytest.raises(RegistryError, match="not a registry URI"):
        registry.resolve("runs:/abc/model", uri)


def test_list_all_models(runs, tiny_model):
    register(runs, tiny_model, "a1", 0.7, name="alpha")
    register(runs, tiny_model, "b1", 0.6, name="beta")
    cfg, folder = make_run(runs, tiny_model, "b2", 0.6, name="beta")
    cfg.registry.model_name = "gamma"  # registry.model_name overrides `name`
    assert registry.register(cfg, folder)["name"] == "gamma"
    rows = registry.list_versions(None, uri_of(runs))
    assert [(r["name"], r["version"], r["aliases"]) for r in rows] == [
        ("alpha", "1", ["champion"]),
        ("beta", "1", ["champion"]),
        ("gamma", "1", ["champion"]),
    ]
    cfg.registry.model_name = "bad/name"
    with pytest.raises(RegistryError, match="registry.model_name"):
        registry.register(cfg, folder)


# ---------------------------------------------------------------- a real tracking server


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on a free 127.0.0.1 port, proxying artifacts; stopped afterwards."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "server"
    store.mkdir()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--workers", "1"]
    cmd += ["--artifacts-destination", str(store / "artifacts")]
    log = open(store / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # poll the health route: the server takes seconds to migrate and start
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (store / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_remote_server_register_resolve_downloads_once(
    mlflow_server, tmp_path, tiny_model, monkeypatch
):
    monkeypatch.setenv("VERTICALIZE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    cfg, folder = make_run(runs, tiny_model, "v1", 0.80)
    cfg.registry.tracking_uri = mlflow_server
    entry = registry.register(cfg, folder)
    assert (entry["version"], entry["alias"], entry["tracking_uri"]) == (
        "1",
        "champion",
        mlflow_server,
    )
    assert not (runs / "mlflow.db").exists() and not (runs / "mlartifacts").exists()
    assert registry.alias_version("drug-reviews", "champion", mlflow_server) == "1"

    local, label = registry.resolve("models:/drug-reviews@champion", mlflow_server)
    assert label == "drug-reviews/1"
    assert local.is_relative_to(tmp_path / "cache" / "registry")
    model = AutoModelForSequenceClassification.from_pretrained(local)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert (local / "verticalize.json").is_file()
    again, _ = registry.resolve("models:/drug-reviews/1", mlflow_server)
    assert again == local  # the second resolve re-uses the downloaded copy
