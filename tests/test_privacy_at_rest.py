"""Privacy at rest (issue 20): PII and an API key planted in feedback, requests, errors and
logs appear in no file the service or the CLI writes, nor in what they print. Feedback is
masked with the project's own data.pii settings; a crash log masks what it could not elide."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
from conftest import VERTICALIZE, write
from serve_support import tiny_classifier_folder

from verticalize.config import PiiConfig
from verticalize.data.crypto import read_vault
from verticalize.data.pii import reidentify
from verticalize.data.pii_detect import id_card_check_char
from verticalize.serve.feedback import VAULT_FILE, FeedbackStore, export_feedback
from verticalize.serve.privacy import FeedbackMasker, MaskingLogFilter

ID_CARD = "11010519880517123" + id_card_check_char("11010519880517123")
MOBILE = "13912345678"
EMAIL = "wei.zhang@example.com"
CN_NAME = "张伟"  # before 先生: a name with a title
EN_NAME = "Margaret Thornton"  # after Dr.
SSN = "401-22-7788"
MRN = "MRN-0012345"  # a custom kind of the project (regex)
WARD = "心内三病区"  # a custom kind of the project (dictionary file)
PLANTED = (ID_CARD, MOBILE, EMAIL, CN_NAME, EN_NAME, SSN, MRN, WARD)
TEXT = (
    f"我是{CN_NAME}先生，手机{MOBILE}，身份证{ID_CARD}，邮箱 {EMAIL}，住在{WARD}，病历号 {MRN}。"
    f" Please ask Dr. {EN_NAME} (SSN {SSN}) to call back."
)

PROJECT = """
name: private
task: classification
run_dir: {run}
data:
  sources:
    - path: reviews.jsonl
  labels: [negative, positive]
  pii:
    enabled: true
    action: redact
    custom:
      - {{name: mrn, pattern: 'MRN-\\d{{7}}'}}
      - {{name: ward, dictionary: terms/wards.txt}}
"""

# a third-party task plugin with a bug: its error message holds the record's text unquoted,
# and a quoted copy in the error chained to it
CRASHY = """
from verticalize.plugins import TaskPlugin


def parse_label(row, src, cfg, section=None):
    text = row["text"]
    try:
        return str(int(text)), None
    except ValueError as e:
        raise RuntimeError("no label number in the note: " + text) from e


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


def _spellings(secret: str) -> set[str]:
    """The ways a file could hold `secret`: as is, JSON-escaped, %-encoded (audit lines)."""
    return {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}


def _leaks(texts: dict[str, str], secrets: list[str]) -> list[tuple[str, str]]:
    return [
        (where, secret)
        for where, text in texts.items()
        for secret in secrets
        if any(s in text for s in _spellings(secret))
    ]


def _files(*roots: Path) -> dict[str, str]:
    """Every file under `roots`, as text (binary files decoded leniently)."""
    return {
        str(p): p.read_bytes().decode("utf-8", "replace")
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VERTICALIZE_QUIET": "1", "COLUMNS": "300"} | extra


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [VERTICALIZE, *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(args: list[str], cwd: Path, output: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    with open(output, "w") as out:
        proc = subprocess.Popen(
            [VERTICALIZE, "serve", *args, "--port", str(port)],
            cwd=cwd,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:  # uvicorn listens once the model is loaded
        if proc.poll() is not None:
            raise AssertionError(output.read_text())
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("not ready after 180 s:\n" + output.read_text())
        time.sleep(0.2)


def test_planted_pii_and_key_reach_no_file_the_service_or_cli_writes(tmp_path):
    run, project, secrets = tmp_path / "run", tmp_path / "project", tmp_path / "secrets"
    shutil.copytree(tiny_classifier_folder(), run / "model")
    (run / "data").mkdir()
    yaml_path = write(project / "verticalize.yaml", PROJECT.format(run=run))
    write(project / "terms" / "wards.txt", WARD + "\n")
    write(project / "reviews.jsonl", '{"text": "works well", "label": "positive"}\n')
    printed: dict[str, str] = {}

    done = _cli("keys", "add", str(secrets / "api-keys"), "--id", "tester", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("vz-")  # shown once, on the terminal: never kept

    output = tmp_path / "server-output.txt"  # the server's stdout and stderr
    # started from another folder: the dictionary is found relative to the YAML
    proc, url = _start_server(
        [str(yaml_path), "--api-keys-file", str(secrets / "api-keys")], tmp_path, output
    )
    try:
        auth = {"Authorization": f"Bearer {key}", "User-Agent": f"client of {EMAIL} {MOBILE}"}
        r = httpx.post(url + "/v1/classify", json={"input": [TEXT]}, headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        rid = r.headers["x-request-id"]
        comment = f"wrong! {CN_NAME}先生 here, call {MOBILE} or mail {EMAIL}; SSN {SSN}"
        feedback = {"request_id": rid, "rating": 1, "correction": "negative", "comment": comment}
        r = httpx.post(url + "/v1/feedback", json=feedback, headers=auth, timeout=60)
        assert r.status_code == 200 and r.json()["kind"] == "wrong", r.text
        direct = {"text": TEXT, "prediction": "negative", "correction": "positive", "rating": 2}
        r = httpx.post(url + "/v1/feedback", json=direct, headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        r = httpx.post(url + f"/v1/patients/{MOBILE}/{quote(EMAIL)}", headers=auth, timeout=60)
        assert r.status_code == 404  # the path, client-chosen, is audited masked
        r = httpx.post(url + "/v1/classify", json={"input": TEXT}, headers={"x-api-key": SSN})
        assert r.status_code == 401
        metrics = httpx.get(url + "/metrics", timeout=60).text
        assert "verticalize_feedback" in metrics
        printed["/metrics"] = metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    printed["server output"] = output.read_text()
    # the service said which settings mask feedback: the project's data.pii
    assert f"action redact) with data.pii of {yaml_path}" in printed["server output"]
    assert f"verticalize serve: {url} " in printed["server output"]  # our own line, unmasked

    exported = tmp_path / "exports" / "corrections.jsonl"
    done = _cli(
        "feedback",
        "export",
        str(run / "serve" / "feedback"),
        "--task",
        "classification",
        "--output",
        str(exported),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    printed["feedback export"] = done.stdout + done.stderr

    # an internal error of the CLI while it reads a record full of PII
    crash = tmp_path / "crash"
    plugin = crash / "plugin"
    write(plugin / "verticalize_crashy" / "__init__.py", CRASHY)
    dist = plugin / "verticalize_crashy-0.1.dist-info"
    write(dist / "METADATA", "Metadata-Version: 2.1\nName: verticalize-crashy\nVersion: 0.1\n")
    write(dist / "entry_points.txt", "[verticalize.tasks]\ncrashy = verticalize_crashy:plugin\n")
    record = json.dumps({"text": TEXT, "label": "x"}, ensure_ascii=False)
    write(crash / "notes.jsonl", record + "\n")
    write(crash / "terms" / "wards.txt", WARD + "\n")
    crash_yaml = write(
        crash / "verticalize.yaml",
        PROJECT.format(run=run)
        .replace("name: private", "name: crashy-run")
        .replace("task: classification", "task: crashy")
        .replace("reviews.jsonl", "notes.jsonl"),
    )
    path = os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])
    done = _cli(
        "data", str(crash_yaml), "--run-dir", str(run), cwd=crash, env=_env(PYTHONPATH=path)
    )
    assert done.returncode == 70, done.stdout + done.stderr
    printed["crash output"] = done.stdout + done.stderr
    assert "Traceback" not in printed["crash output"]

    written = _files(run, secrets, tmp_path / "exports")
    assert _leaks(written | printed, [*PLANTED, key]) == []

    # positive controls: the things looked for were there to find, masked
    stored = (run / "serve" / "feedback" / "feedback.jsonl").read_text("utf-8")
    for placeholder in ("[MOBILE]", "[ID_CARD]", "[EMAIL]", "[SSN]", "[CN_NAME]", "[EN_NAME]"):
        assert placeholder in stored, placeholder
    assert "[MRN]" in stored and "[WARD]" in stored  # the project's own kinds
    assert exported.read_text("utf-8").count("[MOBILE]") == 2  # export: masked records
    assert not exported.with_suffix(".skipped.jsonl").exists()
    audit = (run / "serve" / "audit.log").read_text("ascii")
    assert " tester " in audit and "/v1/patients/139****5678/" in audit  # key id, masked path
    logs = list((run / "errors").glob("*.log"))
    assert len(logs) == 1 and "no label number in the note:" in logs[0].read_text("utf-8")
    assert "139****5678" in logs[0].read_text("utf-8")  # masked, not elided: it was unquoted
    assert (
        key[3:] not in (secrets / "api-keys").read_text()
        and "sha256$" in written[str(secrets / "api-keys")]
    )


def test_masked_ner_feedback_still_exports_consistent_spans(tmp_path):
    text = f"Dr {EN_NAME} called {MOBILE} from Boston"
    start = text.index(EN_NAME)
    store = FeedbackStore(tmp_path / "fb", masker=FeedbackMasker(PiiConfig(action="redact")))
    person = {"start": start, "end": start + len(EN_NAME), "label": "PER", "text": EN_NAME}
    boston = [text.index("Boston"), len(text), "LOC"]
    stored = store.record(
        {
            "task": "ner",
            "input": [text],
            "prediction": [[person | {"score": 0.9}]],
            "correction": [person, boston],
            "comment": f"missed {MOBILE}",
        }
    )
    masked = "Dr [EN_NAME] called [MOBILE] from Boston"
    assert stored["input"] == [masked] and stored["comment"] == "missed [MOBILE]"
    assert stored["prediction"][0][0] | {"score": 0} == {
        "start": 3,
        "end": 12,
        "label": "PER",
        "text": "[EN_NAME]",
        "score": 0,
    }
    stats = export_feedback(tmp_path / "fb", tmp_path / "out.jsonl", "ner")
    assert (stats["exported"], stats["skipped"]) == (1, 0)
    row = json.loads((tmp_path / "out.jsonl").read_text("utf-8"))
    boston = masked.index("Boston")
    assert row["text"] == masked and row["spans"] == [[3, 12, "PER"], [boston, boston + 6, "LOC"]]


def test_pseudonymized_feedback_comes_back_with_the_key_only(tmp_path):
    key = os.urandom(32)
    masker = FeedbackMasker(PiiConfig(action="pseudonym"), key)
    stored = FeedbackStore(tmp_path, masker=masker).record({"input": TEXT, "rating": 3})
    assert not _leaks(_files(tmp_path), list(PLANTED[:6]))
    vault = read_vault(tmp_path / VAULT_FILE)
    assert len(vault) >= 6 and reidentify(stored["input"], vault, key).count(MOBILE) == 1


def test_service_log_lines_are_masked_and_tracebacks_hold_no_locals():
    logger = logging.getLogger("verticalize.serve.test-privacy")
    logger.propagate = False
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger.addHandler(handler)
    logger.addFilter(MaskingLogFilter())
    try:
        record = {"text": TEXT}  # a local variable of the failing frame
        try:
            raise ValueError("cannot read " + record["text"])
        except ValueError:
            logger.exception("request from %s failed", EMAIL)
    finally:
        logger.removeHandler(handler)
    out = buffer.getvalue()
    assert "Traceback (most recent call last)" in out and "cannot read" in out
    assert "request from w********@example.com failed" in out
    assert _leaks({"log": out}, list(PLANTED[:6])) == []
