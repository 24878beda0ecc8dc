"""The secret key, its subkeys, and encryption at rest for sensitive outputs (D5).

One 32-byte key file, kept outside the run folder, feeds HKDF subkeys so pseudonym tokens,
the pseudonym vault and file encryption never share a key. Files are encrypted in chunks
with AES-256-GCM so gigabyte splits stream through a fixed amount of memory.

Encrypted file layout::

    header  = b"VZENC" version(1) chunk_size(u32) nonce_prefix(8)
    chunk_i = length(u32) ciphertext+tag
    nonce_i = nonce_prefix || i (u32);  AAD_i = header || i (u64) || is_final (u8)

The AAD binds each chunk to its place, so reordered, dropped or appended chunks fail to
decrypt, and a file cut after any chunk fails because that chunk was not sealed as final.
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from verticalize.errors import ConfigError, DataError

KEY_BYTES = 32
CHUNK_BYTES = 1 << 20
_MAGIC = b"VZENC\x01"
_HEADER = struct.Struct(">6sI8s")
_LEN = struct.Struct(">I")
_TAG_BYTES = 16


class KeyFile(NamedTuple):
    key: bytes
    created: bool


def load_or_create_key(path: Path, forbidden_root: Path) -> KeyFile:
    """The 32-byte key in `path`, created (mode 0600) when missing; `created` says which.

    Raises ConfigError when the key file lies inside `forbidden_root` (the run folder: a key
    shipped with the data protects nothing), is readable by others, or is not 32 bytes."""
    path = Path(path).expanduser().resolve()
    root = Path(forbidden_root).expanduser().resolve()
    if path.is_relative_to(root):
        raise ConfigError(
            f"data.key_file: {path} is inside the run folder {root}; whoever gets the data "
            "would get the key with it. Fix: point data.key_file outside the run folder, "
            "e.g. ~/.config/verticalize/key"
        )
    if path.exists():
        return KeyFile(_read_key(path), created=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    try:  # O_EXCL: two runs starting together must not overwrite each other's key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return KeyFile(_read_key(path), created=False)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return KeyFile(key, created=True)


def _read_key(path: Path) -> bytes:
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise ConfigError(
            f"data.key_file: {path} can be read by other users (mode "
            f"{path.stat().st_mode & 0o777:o}). Fix: chmod 600 {path}"
        )
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"data.key_file: {path} holds {len(key)} bytes, not a {KEY_BYTES}-byte key. Fix: "
            "restore the right key file, or point data.key_file at a new path to create one "
            "(data encrypted with the old key then cannot be read)."
        )
    return key


def derive_key(key: bytes, purpose: str) -> bytes:
    """A 32-byte subkey of `key` for one purpose (HKDF-SHA256); distinct purposes, distinct keys."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"verticalize/" + purpose.encode()
    )
    return hkdf.derive(key)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, final)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + _LEN.pack(index)


def encrypt_file(src: Path, dst: Path, key: bytes, chunk_bytes: int = CHUNK_BYTES) -> None:
    """Write `src` to `dst` AES-256-GCM encrypted in chunks; `dst` appears only when complete."""
    aead = AESGCM(derive_key(key, "file"))
    header = _HEADER.pack(_MAGIC, chunk_bytes, os.urandom(8))
    prefix = header[-8:]
    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        fout.write(header)
        chunk, index = fin.read(chunk_bytes), 0
        while True:  # read one chunk ahead: the last chunk must be sealed as final
            nxt = fin.read(chunk_bytes)
            sealed = aead.encrypt(_nonce(prefix, index), chunk, _aad(header, index, not nxt))
            fout.write(_LEN.pack(len(sealed)) + sealed)
            if not nxt:
                break
            chunk, index = nxt, index + 1
    os.replace(tmp, dst)


def _broken(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what}: wrong key or the file was modified or truncated. Fix: use the "
        "data.key_file the file was encrypted with; if the key is right, restore the file "
        "from a backup or re-run the data stage."
    )


def _read_chunk(fh: BinaryIO, path: Path, limit: int) -> bytes | None:
    raw = fh.read(_LEN.size)
    if not raw:
        return None
    (n,) = _LEN.unpack(raw) if len(raw) == _LEN.size else (-1,)
    body = fh.read(n) if 0 < n <= limit else b""
    if len(body) != n:
        raise _broken(path, "a chunk is cut short or has an impossible length")
    return body


def decrypt_chunks(path: Path, key: bytes) -> Iterator[bytes]:
    """The plaintext of an `encrypt_file` output, chunk by chunk, each one authenticated."""
    with open(path, "rb") as fh:
        header = fh.read(_HEADER.size)
        if len(header) != _HEADER.size or not header.startswith(_MAGIC):
            raise DataError(
                f"{path}: not a verticalize encrypted file (unknown header). Fix: pass the "
                ".jsonl.enc file written by the data stage."
            )
        _, chunk_bytes, prefix = _HEADER.unpack(header)
        aead = AESGCM(derive_key(key, "file"))
        limit = chunk_bytes + _TAG_BYTES
        sealed, index = _read_chunk(fh, path, limit), 0
        if sealed is None:
            raise _broken(path, "no chunks after the header")
        while sealed is not None:
            nxt = _read_chunk(fh, path, limit)
            try:
                plain = aead.decrypt(
                    _nonce(prefix, index), sealed, _aad(header, index, nxt is None)
                )
            except InvalidTag:
                raise _broken(path, f"chunk {index} does not authenticate") from None
            yield plain
            sealed, index = nxt, index + 1


def decrypt_lines(path: Path, key: bytes) -> Iterator[str]:
    """The decrypted text of `path` line by line, each line keeping its '\\n' like a file.

    Chunks are checked as they stream: lines before a broken chunk are yielded before the
    DataError, so write what you read to a temporary file (as decrypt_file does)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    try:
        for chunk in decrypt_chunks(path, key):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            yield from (line + "\n" for line in lines)
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: decrypted text is not UTF-8 ({e}). Fix: use decrypt_file."
        ) from None
    if pending:
        yield pending


def decrypt_file(src: Path, dst: Path, key: bytes) -> None:
    """Write the plaintext of `src` to `dst`; nothing is left at `dst` when decryption fails."""
    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    try:
        with open(tmp, "wb") as fout:
            for chunk in decrypt_chunks(src, key):
                fout.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)


def write_vault(path: Path, vault: dict[str, bytes]) -> None:
    """Store {token: encrypted original} as JSON lines (base64 values), mode 0600, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for token in sorted(vault):
            value = base64.b64encode(vault[token]).decode("ascii")
            fh.write(json.dumps({"token": token, "value": value}) + "\n")
    os.replace(tmp, path)


def read_vault(path: Path) -> dict[str, bytes]:
    """The {token: encrypted original} mapping written by `write_vault`."""
    vault = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                vault[row["token"]] = base64.b64decode(row["value"], validate=True)
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(
                    f"{path}:{lineno}: not a vault line ({e}). Fix: restore the vault file "
                    "written by the data stage."
                ) from None
    return vault
