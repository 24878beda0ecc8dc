"""Where a source's bytes come from: a file or folder, or a file inside an installed package's
zip; the format is named in the YAML or inferred from the suffix. The config loader checks
them up front; the data stage reads them."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
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
            "conll to this source."
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
        if res.member:
            with zipfile.ZipFile(res.file) as zf:
                names = zf.namelist()
            if res.member not in names:
                raise ConfigError(
                    f"{where(loc)}: data.sources[{i}].path: {res.file.name} has no member "
                    f"{res.member!r}. Fix: use one of {names}."
                )
