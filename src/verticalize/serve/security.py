"""Who may call the service and how often (S3): API keys, rate limits, IP allow-list, and PII
masking of user input before it reaches a log line.

Keys file, one key a line (`#` comments and blank lines allowed)::

    <key_id>:<role>:sha256$<salt hex>$<digest hex>      role: user | admin
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from verticalize.config import PII_KINDS
from verticalize.data.pii import mask_value
from verticalize.data.pii_detect import Detector, detect_pii
from verticalize.errors import ServeError

__all__ = [
    "ENV_KEYS",
    "ROLES",
    "AllowList",
    "Key",
    "KeyStore",
    "RateDecision",
    "RateLimiter",
    "add_key",
    "hash_key",
    "mask_for_log",
    "new_key",
]

ENV_KEYS = "VERTICALIZE_API_KEYS"
ROLES = ("user", "admin")
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SALT_BYTES = 16
_MAX_KEY_CHARS = 512  # longer bearer tokens are not ours; refuse before hashing them N times
_ADD_FIX = "create keys with `verticalize keys add <file> --id NAME`"


def hash_key(raw: str, salt: bytes | None = None) -> str:
    """'sha256$<salt hex>$<digest hex>' of `raw` under `salt` (16 random bytes when None)."""
    # keys are 256-bit random tokens, so one salted SHA-256 cannot be brute-forced; a slow
    # KDF (bcrypt, scrypt) only protects low-entropy passwords and would cost every request
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    return f"sha256${salt.hex()}${_digest(salt, raw).hex()}"


def _digest(salt: bytes, raw: str) -> bytes:
    return hashlib.sha256(salt + raw.encode("utf-8", "surrogatepass")).digest()


def new_key() -> str:
    """A fresh API key: 'vz-' + 43 URL-safe characters (256 random bits)."""
    return "vz-" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Key:
    """An authenticated caller: the key's id (safe to log) and its role."""

    id: str
    role: str


@dataclass(frozen=True)
class _Entry:
    key: Key
    salt: bytes
    digest: bytes


class KeyStore:
    """Salted key hashes; `verify` finds the key a raw token belongs to in constant time."""

    def __init__(self, entries: list[_Entry] | None = None, origin: str = "(none)"):
        self._entries = list(entries or [])
        self.origin = origin

    @classmethod
    def from_file(cls, path: Path | str) -> KeyStore:
        """Keys from a keys file; ServeError naming file:line for a bad or duplicate line."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ServeError(
                f"{path}: API keys file not found. Fix: {_ADD_FIX}, or leave "
                "serve.api_keys_file unset to serve without authentication (local use only)."
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ServeError(
                f"{path}: cannot read the API keys file ({e}). Fix: {_ADD_FIX}"
            ) from None
        return cls(_parse(text.splitlines(), lambda n: f"{path}:{n}"), str(path))

    @classmethod
    def from_env(cls, var: str = ENV_KEYS) -> KeyStore:
        """Keys from $VERTICALIZE_API_KEYS (keys-file lines joined by ','); empty when unset."""
        value = os.environ.get(var, "")
        return cls(_parse(value.split(","), lambda n: f"${var} entry {n}"), f"${var}")

    @classmethod
    def load(cls, path: Path | str | None) -> KeyStore:
        """The keys file when `path` is given, else $VERTICALIZE_API_KEYS (maybe empty)."""
        return cls.from_file(path) if path else cls.from_env()

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (then every call needs a key)."""
        return bool(self._entries)

    @property
    def ids(self) -> list[str]:
        return [e.key.id for e in self._entries]

    def verify(self, raw: str | None) -> Key | None:
        """The Key whose hash matches `raw`, else None. Every entry is compared with
        hmac.compare_digest and the loop never exits early, so timing does not tell which
        entry (or how much of one) matched."""
        if not raw or len(raw) > _MAX_KEY_CHARS:
            return None
        found = None
        for entry in self._entries:
            if hmac.compare_digest(_digest(entry.salt, raw), entry.digest):
                found = entry.key
        return found


def _parse(lines: list[str], where) -> list[_Entry]:
    entries: list[_Entry] = []
    seen: dict[str, str] = {}
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = _parse_line(line, where(n))
        if entry.key.id in seen:
            raise ServeError(
                f"{where(n)}: key id '{entry.key.id}' is already used at {seen[entry.key.id]}. "
                "Fix: give every key its own id (the audit log names callers by it)."
            )
        seen[entry.key.id] = where(n)
        entries.append(entry)
    return entries


def _parse_line(line: str, where: str) -> _Entry:
    parts = line.split(":")
    shown = line if len(line) <= 60 else line[:60] + "…"
    if len(parts) != 3:
        raise ServeError(
            f"{where}: expected '<key_id>:<role>:<hash>', got {shown!r}. Fix: {_ADD_FIX}"
        )
    key_id, role, hashed = parts
    if not KEY_ID.match(key_id):
        raise ServeError(
            f"{where}: key id {key_id!r} must be 1-64 letters, digits, '_', '.', '@' or '-'. "
            f"Fix: {_ADD_FIX}"
        )
    if role not in ROLES:
        raise ServeError(f"{where}: role {role!r} is not one of {list(ROLES)}. Fix: {_ADD_FIX}")
    algo, _, rest = hashed.partition("$")
    salt_hex, _, digest_hex = rest.partition("$")
    try:
        salt, digest = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        salt, digest = b"", b""
    if algo != "sha256" or not salt or len(digest) != 32:
        raise ServeError(
            f"{where}: key '{key_id}' has no valid 'sha256$<salt hex>$<64 hex digits>' hash "
            f"(a raw key must never be stored). Fix: {_ADD_FIX}"
        )
    return _Entry(Key(key_id, role), salt, digest)


def add_key(path: Path | str, key_id: str, role: str = "user") -> str:
    """Append a new key's hash line to `path` (created with mode 0600) and return the raw key,
    which is shown once and stored nowhere."""
    path = Path(path)
    if not KEY_ID.match(key_id):
        raise ServeError(
            f"--id {key_id!r}: use 1-64 letters, digits, '_', '.', '@' or '-' "
            "(no ':' or spaces), e.g. --id billing-service"
        )
    if role not in ROLES:
        raise ServeError(f"--role {role!r} is not one of {list(ROLES)}. Fix: --role user")
    if path.exists() and key_id in KeyStore.from_file(path).ids:
        raise ServeError(
            f"{path}: key id '{key_id}' already exists. Fix: choose another --id, or delete its "
            "line to revoke the old key first."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = new_key()
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(("\n" if torn else "") + f"{key_id}:{role}:{hash_key(raw)}\n")
    return raw


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one rate-limit check, and the headers that tell the client about it."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # seconds until the oldest call in the window leaves it (a slot frees)
    retry_after_s: int  # whole seconds to wait when denied, else 0

    def headers(self) -> dict[str, str]:
        """X-RateLimit-Limit/-Remaining/-Reset (whole seconds, rounded up), plus Retry-After
        when denied; empty when rate limiting is off."""
        if self.limit <= 0:
            return {}
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_s)),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


class RateLimiter:
    """Exact sliding window: at most `per_minute` allowed calls per key in any `window_s`
    seconds (a deque of the allowed calls' times per key); 0 = no limit. Thread-safe."""

    def __init__(self, per_minute: int, window_s: float = 60.0):
        if per_minute < 0:
            raise ServeError(f"serve.rate_limit_per_minute: {per_minute} < 0. Fix: 0 = no limit")
        self.per_minute = per_minute
        self.window_s = window_s
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._checks = 0

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self, key_id: str, now: float | None = None) -> RateDecision:
        """Count one call by `key_id` at `now` (default: time.monotonic()) if a slot is free."""
        if not self.enabled:
            return RateDecision(True, 0, 0, 0.0, 0)
        now = time.monotonic() if now is None else now
        with self._lock:
            calls = self._calls.setdefault(key_id, deque())
            _expire(calls, now - self.window_s)
            allowed = len(calls) < self.per_minute
            if allowed:
                calls.append(now)
            reset = max(calls[0] + self.window_s - now, 0.0) if calls else 0.0
            remaining = self.per_minute - len(calls)
            self._checks += 1
            if self._checks % 1024 == 0:  # forget idle keys so memory tracks active callers
                self._sweep(now)
        retry = 0 if allowed else max(1, math.ceil(reset))
        return RateDecision(allowed, self.per_minute, remaining, reset, retry)

    def _sweep(self, now: float) -> None:
        for key in list(self._calls):
            _expire(self._calls[key], now - self.window_s)
            if not self._calls[key]:
                del self._calls[key]


def _expire(calls: deque[float], cutoff: float) -> None:
    while calls and calls[0] <= cutoff:
        calls.popleft()


class AllowList:
    """Client IP allow-list of CIDR networks; IPv4-mapped IPv6 clients (::ffff:a.b.c.d)
    match IPv4 networks. An empty list allows nobody."""

    def __init__(self, cidrs: list[str]):
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for i, cidr in enumerate(cidrs):
            try:
                self.networks.append(ipaddress.ip_network(str(cidr).strip(), strict=True))
            except ValueError as e:
                raise ServeError(
                    f"serve.allow_cidrs[{i}]: {cidr!r} is not a network ({e}). "
                    f"Fix: {_cidr_fix(str(cidr))}"
                ) from None

    def allows(self, ip: str | None) -> bool:
        """True when `ip` lies in one of the networks; False for anything not an IP address."""
        try:
            addr = ipaddress.ip_address((ip or "").strip())
        except ValueError:
            return False
        candidates = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        return any(
            a in net for a in candidates for net in self.networks if a.version == net.version
        )


def _cidr_fix(cidr: str) -> str:
    try:
        return f"write {ipaddress.ip_network(cidr.strip(), strict=False)} (host bits cleared)"
    except ValueError:
        return "write an address or network such as 10.0.0.0/8, 192.168.1.7 or fd00::/8"


# Phone numbers in non-Chinese formats ((555) 123-4567, +44 20 7946 0958), which the data
# stage's detector leaves alone; in a log line masking a false positive costs nothing
_OTHER_PHONE = re.compile(
    r"(?<![\w*+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{4}(?![\w*])"
)


def mask_for_log(text: str, custom: dict[str, Detector] | None = None) -> str:
    """`text` with every PII kind the data stage detects (email, ID card, bank card, phones,
    passport, IPv4, names …) and the `custom` kinds (data.pii_custom detectors) masked the
    way data.pii action=mask does, plus other phone formats; call it on any user input
    before it goes into a log line."""
    if not text:
        return text
    parts, pos = [], 0
    for m in detect_pii(text, PII_KINDS, custom):
        parts += [text[pos : m.start], mask_value(m.kind, m.value)]
        pos = m.end
    parts.append(text[pos:])
    return _OTHER_PHONE.sub(lambda m: _star_digits(m.group(), keep=4), "".join(parts))


def _star_digits(value: str, keep: int) -> str:
    n = sum(c.isdigit() for c in value)
    out, seen = [], 0
    for ch in value:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > n - keep else "*")
        else:
            out.append(ch)
    return "".join(out)
