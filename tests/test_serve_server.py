"""Starting the service: what a target resolves to, clear ServeErrors before anything loads
(port in use, no model, bad settings), and `verticalize serve` as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import VERTICALIZE
from serve_support import LABELS, live_server, settings, tiny_classifier_folder

from verticalize.config import ServeConfig
from verticalize.errors import ServeError
from verticalize.serve.app import create_app
from verticalize.serve.engines import folder_version
from verticalize.serve.server import bind_socket, serve
from verticalize.serve.targets import resolve_target


@pytest.fixture()
def run_dir(tmp_path):
    """runs/demo with data/ and model/ (a plain trained model, no export yet)."""
    run = tmp_path / "runs" / "demo"
    (run / "data").mkdir(parents=True)
    shutil.copytree(tiny_classifier_folder(), run / "model")
    return run


def test_a_run_folder_serves_its_export_when_there_is_one(run_dir):
    plain = resolve_target(str(run_dir))
    assert plain.folder == (run_dir / "model").resolve() and plain.task == "classification"
    assert plain.run_dir == run_dir.resolve()
    assert folder_version(plain.folder) == "demo"  # <run>/model is named after its run
    shutil.copytree(run_dir / "model", run_dir / "export" / "model")
    exported = resolve_target(str(run_dir))
    assert exported.folder == (run_dir / "export" / "model").resolve()
    assert folder_version(exported.folder) == "demo"
    direct = resolve_target(str(run_dir / "model"))
    assert direct.run_dir == run_dir.resolve()  # the audit log goes to <run>/serve/


def test_targets_without_a_model_name_the_fix(tmp_path):
    with pytest.raises(ServeError, match="no such file or folder"):
        resolve_target(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServeError, match=r"verticalize train"):
        resolve_target(str(tmp_path / "empty"))
    with pytest.raises(ServeError, match="models:/"):
        resolve_target("models:nothing")


def test_a_port_in_use_is_a_serve_error_before_the_model_loads(tmp_path):
    taken = bind_socket("127.0.0.1", 0)
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ServeError, match=rf"127\.0\.0\.1:{port} is already in use.*--port"):
            serve(str(tmp_path / "not-even-a-model"), settings(tmp_path, port=port))
    finally:
        taken.close()


def test_bad_settings_fail_before_loading(tmp_path):
    with pytest.raises(ServeError, match="allow_cidrs"):
        create_app(settings(tmp_path, allow_cidrs=["10.0.0.300/8"]), tiny_classifier_folder())
    with pytest.raises(ServeError, match="keys file not found"):
        create_app(
            settings(tmp_path, api_keys_file=str(tmp_path / "nope")), tiny_classifier_folder()
        )
    with pytest.raises(ServeError, match="onnx"):
        create_app(settings(tmp_path, runtime="onnx"), tiny_classifier_folder())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cli_server(args: list[str], cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`verticalize serve ARGS --port <free>` in a subprocess, once it is ready: (process,
    base url). The caller stops it."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VERTICALIZE_QUIET": "1"}
    proc = subprocess.Popen(
        [VERTICALIZE, "serve", *args, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # uvicorn listens only once the model is loaded
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("not ready after 120 s")
        time.sleep(0.2)


def test_the_cli_serves_until_sigterm_and_stops_cleanly(run_dir):
    proc, url = start_cli_server([str(run_dir)])
    try:
        r = httpx.post(url + "/v1/classify", json={"input": "works"})
        assert r.status_code == 200 and r.headers["x-model-version"] == "demo"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn finishes in-flight work and the lifespan, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out
    assert "no API keys configured" in out
    lines = (run_dir / "serve" / "audit.log").read_text().splitlines()
    assert any("/v1/classify 200" in line for line in lines)


def test_defaults_are_the_documented_ones():
    s = ServeConfig()
    assert (s.host, s.port, s.max_batch_size, s.max_queue) == ("127.0.0.1", 8000, 32, 256)


def test_the_onnx_runtime_serves_the_int8_export(tmp_path):
    from verticalize.export.onnx import OnnxClassifier, export_classifier, quantize_int8

    folder = tmp_path / "exported"
    shutil.copytree(tiny_classifier_folder(), folder)
    (folder / "onnx").mkdir()
    fp32 = export_classifier(folder, folder / "onnx" / "model.onnx")
    quantize_int8(fp32, folder / "onnx" / "model.int8.onnx")
    texts = ["short", "a somewhat longer review of a drug"]
    expected = OnnxClassifier(folder, quantized=True).predict_proba(texts)
    with live_server(folder, settings(tmp_path, runtime="onnx")) as (url, app):
        assert app.state.serve.router.champion.engine.runtime == "onnx"
        data = httpx.post(url + "/v1/classify", json={"input": texts}).json()["data"]
        for item, probs in zip(data, expected, strict=True):
            assert [item["probs"][lab] for lab in LABELS] == pytest.approx(probs, abs=1e-3)
        emb = httpx.post(url + "/v1/embeddings", json={"input": "short"}, timeout=60)
        assert len(emb.json()["data"][0]["embedding"]) == 32  # the tiny encoder's width
