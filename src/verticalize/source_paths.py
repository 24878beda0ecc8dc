"""Where a source's bytes come from: a file or folder, a file inside an installed package's
zip, or a table or query of an SQLite database; the format is named in the YAML or inferred
from the suffix. The config loader checks them up front; the data stage reads them."""

from __future__ import annotations

import re
import sqlite3
import zipfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from verticalize.assets import AssetMissing, package_dir, package_version
from verticalize.errors import ConfigError

SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "lines",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "labelstudio",
    ".conll": "conll",
    ".bio": "conll",
    ".bmes": "conll",
    ".iob": "conll",
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
}


@dataclass(frozen=True)
class ResolvedSource:
    file: Path  # the file on disk (a zip when member is set)
    member: str | None  # file inside the zip
    package: str | None  # module name for pkg: paths
    format: str

    @property
    def display(self) -> str:
        return f"{self.file.name}#{self.member}" if self.member else str(self.file)

    def provenance(self) -> dict:
        out = {"file": str(self.file), "member": self.member, "format": self.format}
        if self.package:
            out |= {"package": self.package, "package_version": package_version(self.package)}
        return out


def resolve(path: str, fmt: str | None, base_dir: Path) -> ResolvedSource:
    """Resolve `path` (relative to the YAML, or pkg:<module>/<file>[#member])."""
    spec, _, member = path.partition("#")
    package = None
    if spec.startswith("pkg:"):
        module, _, rel = spec[4:].partition("/")
        package = module
        file = package_dir(module) / rel
    else:
        file = Path(spec).expanduser()
        if not file.is_absolute():
            file = base_dir / file
    name = member or file.name
    if fmt is None and not member and file.is_dir():
        fmt = "txt_folder"
    fmt = fmt or SUFFIX_FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: cannot tell the format from the suffix '{Path(name).suffix}'. Fix: add "
            "format: jsonl | csv | tsv | lines | parquet | txt_folder | labelstudio | doccano | "
            "conll | sqlite to this source."
        )
    return ResolvedSource(file=file, member=member or None, package=package, format=fmt)


def check_sources_exist(cfg, where: Callable[[tuple], str]) -> None:
    """Fail up front, naming the YAML line, when a source file or zip member is missing."""
    base = cfg.source_file.parent
    for i, src in enumerate(cfg.data.sources):
        loc = ("data", "sources", i, "path")
        try:
            res = resolve(src.path, src.format, base)
        except AssetMissing as e:
            raise ConfigError(f"{where(loc)}: data.sources[{i}].path: {src.path!r}: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{where(loc)}: data.sources[{i}].path: {e}") from None
        if res.format == "txt_folder":
            if not res.file.is_dir():
                raise ConfigError(
                    f"{where(loc)}: data.sources[{i}].path: folder {src.path!r} not found "
                    f"(looked for {res.file}). Fix: point it at a folder of .txt files."
                )
            continue
        if not res.file.is_file():
            raise ConfigError(
                f"{where(loc)}: data.sources[{i}].path: file {src.path!r} not found "
                f"(looked for {res.file}). Fix: correct the path; relative paths are "
                f"resolved from the YAML's folder {base}."
            )
        if res.format == "sqlite":
            _check_sqlite_source(src, res, i, where)
        elif res.member:
            with zipfile.ZipFile(res.file) as zf:
                names = zf.namelist()
            if res.member not in names:
                raise ConfigError(
                    f"{where(loc)}: data.sources[{i}].path: {res.file.name} has no member "
                    f"{res.member!r}. Fix: use one of {names}."
                )
    _check_benchmarks_exist(cfg, where)


def _check_benchmarks_exist(cfg, where: Callable[[tuple], str]) -> None:
    """data.contamination.benchmarks: each file (or zip member) must be there."""
    base = cfg.source_file.parent
    for i, path in enumerate(cfg.data.contamination.benchmarks):
        field = f"data.contamination.benchmarks[{i}]"
        at = where(("data", "contamination", "benchmarks", i))
        try:
            res = resolve(path, None, base)
        except AssetMissing as e:
            raise ConfigError(f"{at}: {field}: {path!r}: {e}") from None
        if not res.file.is_file():
            raise ConfigError(
                f"{at}: {field}: benchmark file {path!r} not found (looked for {res.file}). "
                f"Fix: correct the path (relative paths start at the YAML's folder {base}), or "
                "remove it from the list."
            )
        if res.member:
            with zipfile.ZipFile(res.file) as zf:
                names = zf.namelist()
            if res.member not in names:
                raise ConfigError(
                    f"{at}: {field}: {res.file.name} has no member {res.member!r}. Fix: use "
                    f"one of {names}."
                )


# ---------------------------------------------------------------- SQLite sources

# what a SELECT may do: read tables, call functions, recurse in a CTE; anything else is refused
_READ_ACTIONS = frozenset(
    (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE)
)
_SELECT = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
_SELECT_FIX = 'give one SELECT statement, e.g. "SELECT text, label FROM records WHERE …"'


class SqliteSourceError(ConfigError):
    """A sqlite source's table or query is unusable; `field` is the source key to fix."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def open_sqlite(file: Path) -> sqlite3.Connection:
    """A read-only connection: the file is opened with mode=ro and only reads are authorized."""
    conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    conn.set_authorizer(
        lambda action, *_: sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY
    )
    return conn


def sqlite_statement(table: str | None, query: str | None) -> str:
    """The SELECT a sqlite source runs: its `query`, or every column of its `table`."""
    if query is not None:
        return query
    return 'SELECT * FROM "{}"'.format((table or "").replace('"', '""'))


def sqlite_columns(file: Path, table: str | None, query: str | None) -> list[str]:
    """The columns the source's statement yields; SqliteSourceError naming the bad value and
    the fix when the file is no database, or the source names no table, or its query is not
    a SELECT or does not run."""
    tables = _tables_of(file)
    if (table is None) == (query is None):
        got = "both" if table else "neither"
        raise SqliteSourceError(
            "table",
            f"a sqlite source needs table: <name> or query: <SELECT …> (got {got}). "
            f"Fix: give one of them; the tables of {file.name}: {tables}.",
        )
    if query is not None and not _SELECT.match(query):
        raise SqliteSourceError(
            "query", f"{query!r} is not a SELECT; sqlite sources are read-only. Fix: {_SELECT_FIX}."
        )
    if table is not None and table not in tables:
        raise SqliteSourceError(
            "table",
            f"{file.name} has no table {table!r}. Fix: use one of {tables}, or give query: "
            "<SELECT …>.",
        )
    try:
        with closing(open_sqlite(file)) as conn:
            cursor = conn.execute(sqlite_statement(table, query))
            columns = [d[0] for d in cursor.description]
            cursor.close()
    except sqlite3.Error as e:
        field, value = ("query", query) if query is not None else ("table", table)
        fix = _SELECT_FIX if "not authorized" in str(e) else "correct the SQL"
        raise SqliteSourceError(
            field,
            f"{value!r} does not run on {file.name}: {e}. Fix: {fix}; the tables of "
            f"{file.name}: {tables}.",
        ) from None
    return columns


def _tables_of(file: Path) -> list[str]:
    try:
        with closing(open_sqlite(file)) as conn:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
            ).fetchall()
    except sqlite3.Error as e:
        raise SqliteSourceError(
            "path", f"{file} is not a readable SQLite database ({e}). Fix: point it at a .db file."
        ) from None
    return [name for (name,) in rows]


def _check_sqlite_source(src, res: ResolvedSource, i: int, where: Callable[[tuple], str]) -> None:
    """The statement runs read-only and yields every column the source's fields name."""
    try:
        columns = sqlite_columns(res.file, src.table, src.query)
    except SqliteSourceError as e:
        raise ConfigError(
            f"{where(('data', 'sources', i, e.field))}: data.sources[{i}].{e}"
        ) from None
    named = {"text": src.text} if not (src.chat or src.templates) else {}
    if src.label_value is None and "label" in src.model_fields_set:
        named["label"] = src.label
    for key in ("spans", "group", "item", "annotator"):
        if getattr(src, key) is not None:
            named[key] = getattr(src, key)
    named |= {f"fields[{n}]": column for n, column in enumerate(src.fields or [])}
    for key, column in named.items():
        if column not in columns:
            loc = ("data", "sources", i, key.partition("[")[0])
            raise ConfigError(
                f"{where(loc)}: data.sources[{i}].{key}: no column {column!r} in what "
                f"{sqlite_statement(src.table, src.query)!r} yields. Fix: use one of {columns}."
            )
