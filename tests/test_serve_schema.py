"""Schemathesis (`st run`, every check, every phase) against the live server's /openapi.json:
generated valid requests must be accepted, invalid ones refused, no answer may be a 5xx, and
every answer must match the schema (status codes, content types, bodies, headers). The
schema says only what the server does: a classifier's has no chat, completions or ner.
Bounded examples per operation keep the classifier run under a minute."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serve_support import classifier_folder, live_server, smollm_folder
from serve_support import settings as serve_settings

from verticalize.serve.security import add_key

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")


def schemathesis_run(url: str, key: str, tmp: Path, max_examples: int) -> dict:
    """`st run` with every check against the server at `url`; returns its JSON report."""
    report = tmp / "schemathesis.json"
    command = [SCHEMATHESIS, "run", url + "/openapi.json", "--checks", "all"]
    command += ["--header", f"x-api-key: {key}", "--max-examples", str(max_examples)]
    command += ["--report", "json", "--report-json-path", str(report)]
    command += ["--generation-database", "none", "--no-color"]
    done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=900)
    assert report.is_file(), done.stdout + done.stderr
    return json.loads(report.read_text()) | {"output": done.stdout[-20000:]}


def assert_clean(run: dict) -> None:
    """0 failures and 0 errors of any kind; the only warning allowed is that a user key
    gets 403 from /admin/reload (no admin key is given, so the fuzzer reloads nothing)."""
    out = run["output"]
    assert run["exit_code"] == 0 and run["complete"], out
    assert run["failures"] == [] and run["errors"] == [], out
    cases = run["test_cases"]
    assert cases["generated"] > 0 and cases["with_failures"] == cases["errored"] == 0, out
    ops = run["operations"]
    assert ops["tested"] == ops["selected"] == ops["total"] and ops["errored"] == 0, out
    warned = {kind: ops for kind, ops in run["warnings"].items() if ops}
    assert warned in ({}, {"missing_auth": ["POST /admin/reload"]}), warned


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema")
    key = add_key(tmp / "keys", "fuzzer", "user")  # not admin: no model reloads
    serve = serve_settings(tmp, api_keys_file=str(tmp / "keys"), max_texts=4)
    with live_server(classifier_folder(), serve) as (url, _):
        yield url, key, tmp


def test_the_schema_holds_only_what_a_classifier_serves(served):
    url, _, _ = served
    schema = httpx.get(url + "/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/v1/classify", "/v1/embeddings", "/v1/feedback", "/v1/models"} <= paths
    assert not paths & {"/v1/chat/completions", "/v1/completions", "/v1/ner"}
    bodies = schema["components"]["schemas"]
    texts = bodies["TextsRequest"]["properties"]["input"]["anyOf"]
    assert {"type": "string", "pattern": r"\S"} in texts
    [many] = [t for t in texts if t.get("type") == "array"]
    assert many["minItems"] == 1 and many["maxItems"] == 4  # serve.max_texts
    assert bodies["EmbeddingRequest"]["properties"]["dimensions"]["enum"] == [384, None]
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert "403" in operation["responses"], path  # the allow-list answers every route


def test_schemathesis_finds_nothing(served):
    url, key, tmp = served
    run = schemathesis_run(url, key, tmp, max_examples=20)
    assert_clean(run)
    print(f"schemathesis: {run['test_cases']['generated']} requests, 0 failures")


@pytest.fixture(scope="module")
def gen_served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema-gen")
    key = add_key(tmp / "keys", "fuzzer", "user")
    serve = serve_settings(tmp, api_keys_file=str(tmp / "keys"), max_new_tokens=2)
    with live_server(smollm_folder(), serve) as (url, _):
        yield url, key, tmp


@pytest.mark.slow
def test_schemathesis_finds_nothing_on_a_generation_model(gen_served):
    """Chat templates, sampling values and stop strings from the fuzzer, on a real model."""
    url, key, tmp = gen_served
    assert "/v1/chat/completions" in httpx.get(url + "/openapi.json").json()["paths"]
    assert_clean(schemathesis_run(url, key, tmp, max_examples=10))
