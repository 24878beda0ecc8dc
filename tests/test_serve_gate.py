"""The security gate in a live server: API keys (Bearer and x-api-key), exact per-key rate
limits with their headers, the IP allow-list, body-size limits with and without
Content-Length, admin-only reload, and an audit line per request without keys or PII."""

from __future__ import annotations

import httpx
import pytest
from serve_support import classifier_folder, live_server, settings

from verticalize.serve.audit import parse_audit
from verticalize.serve.security import add_key


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    keys_file = tmp / "keys"
    keys = {
        name: add_key(keys_file, name, role)
        for name, role in [
            ("alice", "user"),
            ("bob", "user"),
            ("ops", "admin"),
            ("limited", "user"),
        ]
    }
    serve = settings(
        tmp, api_keys_file=str(keys_file), rate_limit_per_minute=10, max_body_bytes=2048
    )
    with live_server(classifier_folder(), serve) as (url, app):
        yield url, keys, tmp


def test_a_missing_or_wrong_key_is_401_and_probes_need_none(secured):
    url, keys, _ = secured
    for headers in (
        {},
        {"authorization": "Bearer vz-not-a-key"},
        {"x-api-key": "nope"},
        {"authorization": f"Basic {keys['alice']}"},
    ):
        r = httpx.post(url + "/v1/classify", json={"input": "x"}, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["x-request-id"]
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert httpx.get(url + path).status_code == 200, path


def test_bearer_and_x_api_key_both_work(secured):
    url, keys, _ = secured
    bearer = httpx.post(
        url + "/v1/classify",
        json={"input": "x"},
        headers={"authorization": f"Bearer {keys['alice']}"},
    )
    header = httpx.post(
        url + "/v1/classify", json={"input": "x"}, headers={"x-api-key": keys["bob"]}
    )
    assert bearer.status_code == header.status_code == 200


def test_the_rate_limit_lets_exactly_ten_through(secured):
    url, keys, _ = secured
    auth = {"x-api-key": keys["limited"]}
    answers = [httpx.get(url + "/v1/models", headers=auth) for _ in range(11)]
    assert [r.status_code for r in answers] == [200] * 10 + [429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:10]] == [
        str(9 - i) for i in range(10)
    ]
    denied = answers[10]
    assert denied.headers["x-ratelimit-limit"] == "10"
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(denied.headers["retry-after"]) <= 60
    assert 0 < int(denied.headers["x-ratelimit-reset"]) <= 60
    assert denied.json()["error"]["type"] == "rate_limit_error"
    # the limit is per key: another key is unaffected
    other = httpx.get(url + "/v1/models", headers={"x-api-key": keys["bob"]})
    assert other.status_code == 200


def test_bodies_over_the_limit_are_413_with_or_without_content_length(secured):
    url, keys, _ = secured
    auth = {"x-api-key": keys["alice"]}
    big = {"input": "word " * 1000}
    r = httpx.post(url + "/v1/classify", json=big, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunks():
        for _ in range(10):
            yield b"x" * 500

    chunked = httpx.post(url + "/v1/classify", content=chunks(), headers=auth)
    assert chunked.status_code == 413
    small = httpx.post(
        url + "/v1/classify",
        content=iter([b'{"input": ', b'"fine"}']),
        headers=auth | {"content-type": "application/json"},
    )
    assert small.status_code == 200  # a small chunked body passes


def test_reload_needs_an_admin_key(secured):
    url, keys, _ = secured
    user = httpx.post(url + "/admin/reload", headers={"x-api-key": keys["alice"]})
    assert user.status_code == 403 and user.json()["error"]["code"] == "admin_only"
    admin = httpx.post(url + "/admin/reload", headers={"x-api-key": keys["ops"]}, timeout=120)
    assert admin.status_code == 200
    assert admin.json()["changed"] is False  # same folder, same version: nothing to swap


def test_audit_lines_parse_and_hold_no_key_and_no_pii(secured):
    url, keys, tmp = secured
    secret_input = "Call me at 13812345678 or mail jane.doe@example.com about my rash"
    r = httpx.post(
        url + "/v1/classify",
        json={"input": secret_input},
        headers={"x-api-key": keys["alice"], "user-agent": "tool jane.doe@example.com"},
    )
    rid = r.headers["x-request-id"]
    text = (tmp / "audit.log").read_text()
    for secret in [*keys.values(), "13812345678", "jane.doe@example.com", "rash"]:
        assert secret not in text
    rows = parse_audit(tmp / "audit.log")
    mine = next(row for row in rows if row["x-request-id"] == rid)
    assert mine["x-key-id"] == "alice" and mine["c-ip"] == "127.0.0.1"
    assert mine["cs-method"] == "POST" and mine["cs-uri-stem"] == "/v1/classify"
    assert mine["sc-status"] == "200" and float(mine["time-taken"]) >= 0
    assert mine["x-model-version"] == "minilm-cls"
    assert {row["sc-status"] for row in rows} >= {"200", "401", "413", "429"}


def test_clients_outside_the_allow_list_get_403(tmp_path):
    serve = settings(tmp_path, allow_cidrs=["10.0.0.0/8"])
    with live_server(classifier_folder(), serve) as (url, _):
        for path in ("/v1/classify", "/healthz"):
            r = (
                httpx.post(url + path, json={"input": "x"})
                if path != "/healthz"
                else httpx.get(url + path)
            )
            assert r.status_code == 403 and r.json()["error"]["code"] == "ip_not_allowed"
        rows = parse_audit(tmp_path / "audit.log")
        assert [row["sc-status"] for row in rows] == ["403", "403"]


def test_without_keys_reload_is_allowed_from_this_machine(tmp_path):
    with live_server(classifier_folder(), settings(tmp_path)) as (url, _):
        r = httpx.post(url + "/admin/reload", json={"force": True}, timeout=120)
        assert r.status_code == 200 and r.json()["changed"] is True
        assert httpx.post(url + "/v1/classify", json={"input": "x"}).status_code == 200
