"""Who may use the console: a token off localhost, a CSRF header on every state change, and
a Host check on localhost (DNS rebinding)."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

TOKEN_COOKIE = "vz_console_token"
CSRF_COOKIE = "vz_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_token(host: str, token_file: Path | None) -> str | None:
    """None on a loopback address without a token file; else the file's token, or a new one."""
    if token_file is not None:
        token = token_file.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            from verticalize.errors import ConfigError

            raise ConfigError(
                f"{token_file}: the token is {len(token)} characters long. Fix: put a random "
                "token of at least 16 characters in it (e.g. `openssl rand -hex 24`)."
            )
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def check(request: Request, token: str | None) -> Response | None:
    """A refusal for a request that may not pass, else None."""
    if token is None:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        if host and not is_loopback(host):
            return PlainTextResponse(
                f"421: this console serves localhost only, not Host {host!r}", status_code=421
            )
    else:
        given = request.query_params.get("token")
        if _same(given, token) and request.method in SAFE_METHODS:
            # the printed URL carries the token once; from then on it is a cookie
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            url = request.url.replace_query_params(**dict(query)) if query else request.url.path
            response = RedirectResponse(str(url), status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not (_same(request.cookies.get(TOKEN_COOKIE), token) or _same(bearer or None, token)):
            return PlainTextResponse(
                "401: this console needs its token: open the URL it printed at start "
                "(…/?token=…), or send `Authorization: Bearer <token>`",
                status_code=401,
            )
    if request.method not in SAFE_METHODS:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not _same(request.headers.get(CSRF_HEADER), cookie):
            return PlainTextResponse(
                "403: missing or wrong CSRF token (send the page's X-CSRF-Token header)",
                status_code=403,
            )
    return None


def csrf_value(request: Request) -> str:
    """The CSRF token of this browser (set as a cookie by `ensure_csrf_cookie`)."""
    value = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if value is None:
        value = request.state.new_csrf = secrets.token_urlsafe(24)
    return value


def ensure_csrf_cookie(request: Request, response: Response) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new is not None and request.cookies.get(CSRF_COOKIE) is None:
        response.set_cookie(CSRF_COOKIE, new, samesite="strict")
