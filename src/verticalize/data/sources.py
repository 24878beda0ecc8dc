"""Where a source's bytes come from (a file, or a file inside an installed package / zip)
and how its rows are read (JSONL, CSV/TSV, one-text-per-line), each keeping its line number."""

from __future__ import annotations

import csv
import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from verticalize.assets import AssetMissing, package_dir, package_version
from verticalize.errors import ConfigError, DataError
from verticalize.runfolder import file_sha256

csv.field_size_limit(sys.maxsize)

SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "lines",
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
    fmt = fmt or SUFFIX_FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: cannot tell the format from the suffix '{Path(name).suffix}'. "
            "Fix: add format: jsonl | csv | tsv | lines to this source."
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
        if not res.file.is_file():
            raise ConfigError(
                f"{where(loc)}: data.sources[{i}].path: file {src.path!r} not found "
                f"(looked for {res.file}). Fix: correct the path; relative paths are "
                f"resolved from the YAML's folder {base}."
            )
        if res.member:
            with zipfile.ZipFile(res.file) as zf:
                names = zf.namelist()
            if res.member not in names:
                raise ConfigError(
                    f"{where(loc)}: data.sources[{i}].path: {res.file.name} has no member "
                    f"{res.member!r}. Fix: use one of {names}."
                )


@contextmanager
def open_text(res: ResolvedSource, encoding: str) -> Iterator[IO[str]]:
    if res.member:
        with zipfile.ZipFile(res.file) as zf, zf.open(res.member) as raw:
            yield io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
    else:
        with open(res.file, encoding=encoding, errors="replace", newline="") as fh:
            yield fh


def file_digest(res: ResolvedSource) -> str:
    return file_sha256(res.file) + (f"#{res.member}" if res.member else "")


@dataclass
class Row:
    line: int
    fields: dict | None  # None when the row could not be parsed
    error: str | None = None


def read_rows(res: ResolvedSource, encoding: str = "utf-8") -> Iterator[Row]:
    """Stream rows with their 1-based starting line number; unparseable rows carry an error."""
    with open_text(res, encoding) as fh:
        if res.format == "jsonl":
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield Row(n, None, f"bad_json: {e.msg} at column {e.colno}")
                    continue
                if not isinstance(obj, dict):
                    yield Row(n, None, f"bad_json: expected an object, got {type(obj).__name__}")
                    continue
                yield Row(n, obj)
        elif res.format in ("csv", "tsv"):
            reader = csv.reader(fh, delimiter="\t" if res.format == "tsv" else ",")
            try:
                header = next(reader)
            except StopIteration:
                return
            start = reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    yield Row(
                        line, None, f"bad_row: {len(values)} columns, header has {len(header)}"
                    )
                    continue
                yield Row(line, dict(zip(header, values, strict=True)))
        elif res.format == "lines":
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    yield Row(n, {"text": line.rstrip("\r\n")})
        else:  # pragma: no cover - guarded by the schema
            raise DataError(f"{res.display}: unsupported format {res.format!r}")
