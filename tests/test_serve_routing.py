"""A/B routing and hot reload in live servers: the challenger gets about its weight of users,
a user sticks to one version, metrics are per version, and a new version (by POST
/admin/reload, or by the registry alias moving) takes over under load with no failed request.
"""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
from serve_support import (
    fabricate_run,
    live_server,
    settings,
    tiny_classifier_folder,
    versioned_copy,
    write_version,
)

from verticalize.serve.routing import user_bucket


def test_user_buckets_are_stable_and_uniform():
    assert user_bucket("alice") == user_bucket("alice") != user_bucket("bob")
    shares = [user_bucket(f"user-{i}") for i in range(20000)]
    assert all(0 <= s < 1 for s in shares)
    assert sum(s < 0.3 for s in shares) / len(shares) == pytest.approx(0.3, abs=0.015)


@pytest.fixture(scope="module")
def ab_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ab")
    champion = versioned_copy(tiny_classifier_folder(), "v-a", "ab-a")
    challenger = versioned_copy(tiny_classifier_folder(), "v-b", "ab-b")
    serve = settings(tmp, ab={"challenger": str(challenger), "challenger_weight": 0.3})
    with live_server(champion, serve) as (url, app):
        yield url


def _version(client: httpx.Client, user: str | None = None, model: str = "") -> str:
    headers = {"x-user-id": user} if user else {}
    r = client.post("/v1/classify", json={"input": "x", "model": model}, headers=headers)
    assert r.status_code == 200
    assert r.json()["model"] == r.headers["x-model-version"]
    return r.headers["x-model-version"]


def test_the_challenger_gets_its_weight_of_users_and_users_stick(ab_server):
    with httpx.Client(base_url=ab_server) as client:
        first = {f"user-{i}": _version(client, f"user-{i}") for i in range(400)}
        share = Counter(first.values())["v-b"] / len(first)
        assert 0.22 <= share <= 0.38  # 0.3 ± 3.5 standard deviations of 400 draws
        for user in list(first)[:30]:
            assert {_version(client, user) for _ in range(3)} == {first[user]}
        anonymous = {_version(client) for _ in range(60)}  # no header: random per request
        assert anonymous == {"v-a", "v-b"}
        assert _version(client, "user-0", model="v-b") == "v-b"  # naming a served version
        models = client.get("/v1/models").json()["data"]
        assert {(m["id"], m["role"]) for m in models} == {
            ("v-a", "champion"),
            ("v-b", "challenger"),
        }
        metrics = client.get("/metrics").text
    for version in ("v-a", "v-b"):
        assert any(
            line.startswith("verticalize_requests_total")
            and f'model_version="{version}"' in line
            and 'route="/v1/classify"' in line
            for line in metrics.splitlines()
        )
        assert f'verticalize_model_info{{model_version="{version}"' in metrics


class Load:
    """Clients posting /v1/classify until stopped; records (status, version) per answer and
    sets `seen[v]` once `enough` answers of version v arrived."""

    def __init__(self, url: str, clients: int = 4, enough: int = 20):
        self.url, self.enough = url, enough
        self.answers: list[tuple[int, str]] = []
        self.per_client: list[list[str]] = [[] for _ in range(clients)]
        self.seen: dict[str, threading.Event] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def event(self, version: str) -> threading.Event:
        with self.lock:
            return self.seen.setdefault(version, threading.Event())

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/v1/classify", json={"input": f"load {i}"})
                    answer = (r.status_code, r.headers.get("x-model-version", ""))
                except httpx.HTTPError as e:
                    answer = (0, repr(e))
                with self.lock:
                    self.answers.append(answer)
                    self.per_client[i].append(answer[1])
                    n = sum(1 for s, v in self.answers if v == answer[1])
                if n >= self.enough:
                    self.event(answer[1]).set()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _assert_clean_switch(load: Load, old: str, new: str) -> None:
    assert load.answers and all(status == 200 for status, _ in load.answers), [
        a for a in load.answers if a[0] != 200
    ][:5]
    for versions in load.per_client:  # once a client got the new version, never the old
        if new in versions:
            assert old not in versions[versions.index(new) :]


def test_hot_reload_under_load_drops_no_request(tmp_path):
    folder = versioned_copy(tiny_classifier_folder(), "v1", "reload-me")
    with live_server(folder, settings(tmp_path, max_wait_ms=2)) as (url, app):
        with Load(url) as load:
            assert load.event("v1").wait(60)
            write_version(folder, "v2")  # a new export landed in the folder
            r = httpx.post(url + "/admin/reload", timeout=120)
            assert r.json() == {"role": "champion", "from": "v1", "to": "v2", "changed": True}
            assert load.event("v2").wait(60)
        _assert_clean_switch(load, "v1", "v2")
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "v2"
        for _ in range(500):  # the old version retires once its last request finished
            metrics = httpx.get(url + "/metrics").text
            if 'verticalize_model_info{model_version="v1"' not in metrics:
                break
        assert 'verticalize_model_info{model_version="v1"' not in metrics
        assert 'verticalize_model_info{model_version="v2"' in metrics


def test_a_reload_that_fails_keeps_serving_the_old_version(tmp_path):
    folder = versioned_copy(tiny_classifier_folder(), "stays", "keep-me")
    with live_server(folder, settings(tmp_path)) as (url, _):
        r = httpx.post(url + "/admin/reload", json={"target": str(tmp_path / "nothing")})
        assert r.status_code == 400 and "still serving" in r.json()["error"]["message"]
        assert (
            httpx.post(url + "/v1/classify", json={"input": "x"}).headers["x-model-version"]
            == "stays"
        )


def test_a_moved_registry_alias_is_picked_up_under_load(tmp_path, monkeypatch):
    from verticalize import registry

    monkeypatch.setenv("VERTICALIZE_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    uri = registry.tracking_uri(None, runs)
    first = registry.register(*fabricate_run(runs, "r1", 0.50))
    second = registry.register(*fabricate_run(runs, "r2", 0.60))
    assert (first["alias"], second["alias"]) == ("champion", "challenger")
    v1, v2 = "serve-tests-train-r1", "serve-tests-train-r2"
    serve = settings(tmp_path, reload_interval_s=0.2)
    with live_server("models:/serve-tests@champion", serve, uri) as (url, _):
        with Load(url) as load:
            assert load.event(v1).wait(60)
            registry.promote("serve-tests", uri)  # r2 wins by 0.10 > 0.03
            assert load.event(v2).wait(60)
        _assert_clean_switch(load, v1, v2)
