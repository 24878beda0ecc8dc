"""A source's content hash, for the data stage's fingerprint."""

from __future__ import annotations

import hashlib

from verticalize.runfolder import file_sha256
from verticalize.source_paths import ResolvedSource


def file_digest(res: ResolvedSource) -> str:
    """Content hash of a source (a folder: hash of its .txt files' names, sizes and hashes)."""
    if res.format == "txt_folder":
        h = hashlib.sha256()
        for f in sorted(res.file.rglob("*.txt")):
            h.update(f"{f.relative_to(res.file)}:{file_sha256(f)}".encode())
        return h.hexdigest()
    return file_sha256(res.file) + (f"#{res.member}" if res.member else "")
