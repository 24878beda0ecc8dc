"""Serving as an SRE tries it (issue 21): `--set` without `--config`, metric labels of
refused requests, feedback on one item of a batch, blank texts, authorisation before body
validation on /admin/reload, parse errors that keep their code, and a YAML holding only a
serve: section. Real servers on 127.0.0.1, the real `verticalize` command."""

from __future__ import annotations

import json
import shutil
import signal

import httpx
import pytest
from conftest import run_cli, write
from prometheus_client.parser import text_string_to_metric_families
from serve_support import live_server, settings, tiny_classifier_folder
from test_serve_server import start_cli_server

from verticalize.config import is_serve_only, load_serve_config
from verticalize.errors import ConfigError
from verticalize.serve.security import add_key


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("defects")
    roles = {"user": "user", "ops": "admin", "limited": "user"}
    keys = {name: add_key(tmp / "keys", name, role) for name, role in roles.items()}
    serve = settings(
        tmp, api_keys_file=str(tmp / "keys"), rate_limit_per_minute=30, max_body_bytes=16384
    )
    with live_server(tiny_classifier_folder(), serve) as (url, _):
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client, keys, tmp


def error_of(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


def requests_total(client: httpx.Client) -> dict[tuple[str, str, str], float]:
    """verticalize_requests_total by (route, method, status)."""
    text = client.get("/metrics").text
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "verticalize_requests"]
    return {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for s in family.samples
        if s.name == "verticalize_requests_total"
    }


# ---------------------------------------------------------------- 1: --set without --config


@pytest.mark.parametrize(
    "options",
    [
        ["--set", "serve.rate_limit_per_minute=3"],  # the command: no --config
        ["--config", "serve.yaml"],  # 7: a YAML with only a serve: section
    ],
)
def test_set_without_config_and_a_serve_only_yaml_are_applied(tmp_path, options):
    model = tmp_path / "model"
    shutil.copytree(tiny_classifier_folder(), model)
    write(tmp_path / "serve.yaml", "serve:\n  rate_limit_per_minute: 3\n")
    proc, url = start_cli_server([str(model), *options], tmp_path)
    try:
        answers = [httpx.get(url + "/v1/models") for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert answers[-1].headers["x-ratelimit-limit"] == "3"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_a_bad_set_without_config_is_a_clear_error(tmp_path):
    r = run_cli("serve", str(tmp_path), "--set", "serve.rate_limit_per_minute=-1", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert "--set: serve.rate_limit_per_minute" in r.stderr and "(got -1)" in r.stderr
    r = run_cli("serve", str(tmp_path), "--set", "serve.rate_limit=10", cwd=tmp_path)
    assert r.returncode == 2 and "did you mean 'rate_limit_per_minute'?" in r.stderr


def test_commands_that_cannot_use_set_refuse_it(tmp_path, csv_project):
    r = run_cli("eval", "--compare", "runs/a", "runs/b", "--set", "eval.x=1", cwd=tmp_path)
    assert r.returncode == 2 and "--compare" in r.stderr and "--set" in r.stderr
    # `data reidentify` applies --set (run_dir moves the vault): a bad key is reported
    yaml_path = csv_project()
    (tmp_path / "notes.txt").write_text("nothing here\n")
    r = run_cli(
        "data", "reidentify", str(yaml_path), "notes.txt", "--set", "data.nope=1", cwd=tmp_path
    )
    assert r.returncode == 2 and "data.nope: unknown key 'nope'" in r.stderr, r.stderr


# ---------------------------------------------------------------- 2: labels of refused requests


def test_refused_requests_are_counted_under_their_route(server):
    client, keys, _ = server
    assert client.post("/v1/classify", json={"input": "x"}).status_code == 401
    assert client.get("/v1/models/some-model").status_code == 401
    big = {"input": "word " * 4000}
    assert (
        client.post("/v1/classify", json=big, headers={"x-api-key": keys["user"]}).status_code
        == 413
    )
    limited = {"x-api-key": keys["limited"]}
    statuses = [client.get("/v1/models", headers=limited).status_code for _ in range(31)]
    assert statuses[-1] == 429
    counts = requests_total(client)
    assert counts[("/v1/classify", "POST", "401")] >= 1
    assert counts[("/v1/classify", "POST", "413")] >= 1
    assert counts[("/v1/models/{model_id}", "GET", "401")] >= 1
    assert counts[("/v1/models", "GET", "429")] >= 1
    assert not any(
        route == "other" and status in ("401", "413", "429") for route, _, status in counts
    )


# ---------------------------------------------------------------- 3: feedback on one item


def test_feedback_on_one_item_keeps_only_that_item(server):
    client, keys, tmp = server
    auth = {"x-api-key": keys["user"]}
    texts = ["first text", "second text", "third text"]
    answer = client.post("/v1/classify", json={"input": texts}, headers=auth)
    rid, predicted = answer.headers["x-request-id"], answer.json()["data"][1]
    r = client.post("/v1/feedback", json={"rating": 2, "request_id": rid, "index": 1}, headers=auth)
    assert r.status_code == 200
    stored = json.loads((tmp / "feedback" / "feedback.jsonl").read_text().splitlines()[-1])
    assert stored["input"] == "second text" and stored["index"] == 1
    assert stored["prediction"] | {"index": 1} == predicted
    assert "first text" not in json.dumps(stored) and "third text" not in json.dumps(stored)


# ---------------------------------------------------------------- 4: blank texts


@pytest.mark.parametrize("blank", ["", " ", "\n\t ", "\u3000"])
def test_empty_or_whitespace_text_is_a_400(server, blank):
    client, keys, _ = server
    auth = {"x-api-key": keys["user"]}
    for route, body in (
        ("/v1/classify", {"input": blank}),
        ("/v1/classify", {"input": ["fine", blank]}),
        ("/v1/embeddings", {"input": blank}),
    ):
        error = error_of(client.post(route, json=body, headers=auth), 400, "empty_text")
        assert error["param"] == "input" and error["type"] == "invalid_request_error"


# ---------------------------------------------------------------- 5: authorise, then validate


@pytest.mark.parametrize(
    "body",
    [
        {"json": {"role": "nobody"}},
        {"json": {"force": "yes"}},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
    ],
)
def test_reload_refuses_a_user_key_before_reading_the_body(server, body):
    client, keys, _ = server
    headers = {"x-api-key": keys["user"]} | body.pop("headers", {})
    r = client.post("/admin/reload", headers=headers, **body)
    error_of(r, 403, "admin_only")


def test_an_admin_with_a_bad_body_gets_the_validation_error(server):
    client, keys, _ = server
    r = client.post("/admin/reload", json={"role": "nobody"}, headers={"x-api-key": keys["ops"]})
    assert error_of(r, 422, "invalid_request")["param"] == "role"


# ---------------------------------------------------------------- 6: parse errors keep their code


@pytest.mark.parametrize(
    "content, why",
    [
        (b'{"input": "caf\xe9"}', "not UTF-8"),  # Latin-1, not UTF-8
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
    ids=["latin-1", "5000-deep"],
)
def test_unparseable_bodies_are_invalid_json(server, content, why):
    client, keys, _ = server
    headers = {"x-api-key": keys["user"], "content-type": "application/json"}
    r = client.post("/v1/classify", content=content, headers=headers)
    assert why in error_of(r, 400, "invalid_json")["message"]


# ---------------------------------------------------------------- 7: a serve-only YAML


def test_a_yaml_with_only_serve_is_enough(tmp_path):
    path = write(tmp_path / "serve.yaml", "serve:\n  rate_limit_per_minute: 10\n  port: 9000\n")
    assert is_serve_only(path)
    loaded = load_serve_config(path, ["serve.max_texts=4"])
    assert (loaded.rate_limit_per_minute, loaded.port, loaded.max_texts) == (10, 9000, 4)
    assert load_serve_config(None, ["serve.port=1234"]).port == 1234  # --set alone
    project = write(tmp_path / "project.yaml", "name: p\ndata:\n  sources: []\nserve: {}\n")
    assert not is_serve_only(project)


def test_a_bad_serve_only_yaml_names_file_line_field_value_and_fix(tmp_path):
    path = write(tmp_path / "serve.yaml", "serve:\n  port: 80\n  max_body_bytes: 10\n  prot: 1\n")
    with pytest.raises(ConfigError) as e:
        load_serve_config(path)
    lines = str(e.value).splitlines()
    assert lines[0].startswith(f"{path}:3: serve.max_body_bytes:") and "(got 10)" in lines[0]
    assert "Fix:" in lines[0]
    assert lines[1].startswith(f"{path}:4: serve.prot: unknown key") and "'port'" in lines[1]
    extra = write(tmp_path / "extra.yaml", "serve: {}\ntrain:\n  epochs: 1\n")
    with pytest.raises(
        ConfigError, match=r"extra\.yaml:2: train: unknown key.*allowed keys here: serve"
    ):
        load_serve_config(extra)
    r = run_cli("serve", str(tmp_path), "--config", str(path), cwd=tmp_path)  # as a user runs it
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert f"{path}:3: serve.max_body_bytes" in r.stderr and "data" not in r.stderr
