import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from verticalize.errors import ServeError
from verticalize.serve.audit import FIELDS, AuditLog, parse_audit

FIELDS_LINE = (
    "#Fields: date time x-request-id c-ip x-key-id cs(User-Agent) cs-method cs-uri-stem "
    "sc-status time-taken x-model-version"
)
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _write(log: AuditLog, rid: str, **kw) -> None:
    args = {
        "client_ip": "10.0.0.1",
        "key_id": "billing",
        "user_agent": "curl/8.5.0",
        "method": "POST",
        "route": "/v1/classify",
        "status": 200,
        "latency_s": 0.0123,
        "model_version": "reviews-ab12cd34",
        "when": WHEN,
    } | kw
    log.write(rid, **args)


def test_w3c_layout_and_round_trip(tmp_path):
    path = tmp_path / "serve" / "audit.log"
    with AuditLog(path, rotate_bytes=1_000_000, backups=3) as log:
        _write(log, "r1", user_agent="Mozilla/5.0 (X11; Linux x86_64) a+b 100% 中文")
        _write(
            log,
            "r2",
            key_id=None,
            user_agent="",
            client_ip="::ffff:10.0.0.2",
            status=429,
            latency_s=1.23456,
            model_version=None,
            when=datetime(2026, 3, 4, 13, 0, 0, tzinfo=timezone(timedelta(hours=8))),
        )
        _write(log, "-", method="GET", route="/healthz", when=datetime(2026, 1, 2, 3, 4, 5))
    lines = path.read_text(encoding="ascii").splitlines()
    assert lines[0] == "#Version: 1.0" and FIELDS_LINE in lines[:5]
    data = [line for line in lines if not line.startswith("#")]
    assert data[0].split()[:2] == ["2026-03-04", "05:06:07"]
    assert "Mozilla/5.0+(X11;+Linux+x86_64)+a%2Bb+100%25+%E4" in data[0]  # IIS-style '+'
    assert data[0].split()[9] == "0.012"
    assert data[1].split()[4:6] == ["-", "-"] and data[1].split()[-1] == "-"
    assert all(len(line.split(" ")) == len(FIELDS) for line in data)
    rows = parse_audit(path)
    assert [r["x-request-id"] for r in rows] == ["r1", "r2", "-"]
    assert rows[0]["cs(User-Agent)"] == "Mozilla/5.0 (X11; Linux x86_64) a+b 100% 中文"
    assert rows[0] | {"cs(User-Agent)": ""} == {
        "date": "2026-03-04",
        "time": "05:06:07",
        "x-request-id": "r1",
        "c-ip": "10.0.0.1",
        "x-key-id": "billing",
        "cs(User-Agent)": "",
        "cs-method": "POST",
        "cs-uri-stem": "/v1/classify",
        "sc-status": "200",
        "time-taken": "0.012",
        "x-model-version": "reviews-ab12cd34",
    }
    # 13:00 at UTC+8 is 05:00 UTC; a naive time is taken as UTC
    assert (rows[1]["date"], rows[1]["time"], rows[1]["time-taken"]) == (
        "2026-03-04",
        "05:00:00",
        "1.235",
    )
    assert (rows[1]["x-key-id"], rows[1]["x-model-version"], rows[1]["sc-status"]) == (
        "",
        "",
        "429",
    )
    assert (rows[2]["date"], rows[2]["time"]) == ("2026-01-02", "03:04:05")


def test_user_input_is_masked(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog(path, 1_000_000, 1) as log:
        _write(
            log, "13812345678", user_agent="bot mail zhang@example.com", route="/v1/x/13812345678"
        )
    text = path.read_text()
    assert "13812345678" not in text and "zhang@example.com" not in text
    row = parse_audit(path)[0]
    assert row["x-request-id"] == "138****5678" and row["cs-uri-stem"] == "/v1/x/138****5678"


def test_append_only_across_restarts(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog(path, 1_000_000, 2) as log:
        _write(log, "a")
    before = path.read_bytes()
    with AuditLog(path, 1_000_000, 2) as log:
        _write(log, "b")
    after = path.read_bytes()
    assert after.startswith(before)  # nothing rewritten
    assert after.count(b"#Fields:") == 2  # the restart is marked
    assert [r["x-request-id"] for r in parse_audit(path)] == ["a", "b"]


def test_a_torn_line_stays_alone_and_is_reported(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog(path, 1_000_000, 2) as log:
        _write(log, "a")
    with open(path, "a") as fh:
        fh.write("2026-03-04 05:06:07 cut")  # a crash mid-line
    with AuditLog(path, 1_000_000, 2) as log:
        _write(log, "b")
    torn = path.read_text().splitlines().index("2026-03-04 05:06:07 cut") + 1
    with pytest.raises(ServeError, match=rf"audit.log:{torn}: 3 values for 11 #Fields"):
        parse_audit(path)


def test_rotation_keeps_n_backups_each_starting_with_directives(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog(path, rotate_bytes=700, backups=2) as log:
        for i in range(40):
            _write(log, f"req-{i:03d}")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    for p in tmp_path.iterdir():
        text = p.read_text()
        assert text.startswith("#Version: 1.0\n") and FIELDS_LINE in text
        assert p.stat().st_size <= 700
        assert parse_audit(p)  # every file holds requests
    ids = [r["x-request-id"] for r in parse_audit(path, include_backups=True)]
    assert ids == [f"req-{i:03d}" for i in range(40 - len(ids), 40)]  # oldest dropped, in order
    assert len(ids) < 40


def test_concurrent_writers_give_whole_lines(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path, rotate_bytes=20_000, backups=100)

    def writer(n: int) -> None:
        for i in range(150):
            _write(log, f"t{n}-{i}", user_agent=f"worker {n} with spaces")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert len(list(tmp_path.iterdir())) > 3  # it rotated while threads wrote
    rows = parse_audit(path, include_backups=True)
    assert sorted(r["x-request-id"] for r in rows) == sorted(
        f"t{n}-{i}" for n in range(8) for i in range(150)
    )
    assert all(r["cs(User-Agent)"].startswith("worker ") for r in rows)


def test_bad_settings():
    with pytest.raises(ServeError, match="audit_rotate_bytes"):
        AuditLog("x.log", rotate_bytes=0, backups=1)


def test_a_line_larger_than_the_limit_gets_a_file_of_its_own(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog(path, rotate_bytes=50, backups=5) as log:
        for i in range(3):
            _write(log, f"big-{i}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.log", "audit.log.1", "audit.log.2"]
    assert [len(parse_audit(p)) for p in tmp_path.iterdir()] == [1, 1, 1]  # no empty rotations
    assert [r["x-request-id"] for r in parse_audit(path, include_backups=True)] == [
        "big-0",
        "big-1",
        "big-2",
    ]
