"""The gate every HTTP request passes (pure ASGI, so streaming is untouched): a request id,
the IP allow-list (403), the API key (401), the admin role for /admin/ routes (403), the
per-key rate limit (429) and the body-size limit (413, with or without Content-Length); on
the way out the x-request-id and x-model-version headers, one audit line and the request
metrics, labelled with the route template the path matches (refused requests too). An
exception no handler caught becomes a 500 in the OpenAI error shape, still audited."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import time
from collections.abc import Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match

from verticalize.serve.handling import ServeState, error_body

log = logging.getLogger("verticalize.serve")

# probes, scraping and the schema need no key (the allow-list still applies)
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# metric labels: any other method a client invents is counted as "other"
METHODS = BODY_METHODS | {"GET", "HEAD", "OPTIONS"}


class Rejected(Exception):
    def __init__(self, status: int, message: str, code: str, reason: str, headers=None):
        super().__init__(message)
        self.status, self.message, self.code, self.reason = status, message, code, reason
        self.headers = headers or {}


class Gate:
    """ASGI middleware around the FastAPI app; `state` is the service's ServeState and
    `routes` the app's routes, each with its path template (for the metric labels)."""

    def __init__(self, app, state: ServeState, routes: Sequence[BaseRoute]):
        self.app, self.state, self.routes = app, state, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = new_request_id()
        info = scope.setdefault("state", {})
        info["request_id"], info["started"] = rid, started
        headers = Headers(scope=scope)
        client = scope.get("client")
        ip = client[0] if client else None
        outcome = {"status": 500, "started": False, "done": False, "extra": {}}

        async def send_out(message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"], outcome["started"] = message["status"], True
                out = MutableHeaders(scope=message)
                out["x-request-id"] = rid
                out["x-model-version"] = info.get("model_version") or self._version()
                for k, v in outcome["extra"].items():
                    out.setdefault(k, v)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                if not outcome["done"]:  # logged before the client can see the answer end
                    outcome["done"] = True
                    self._finish(scope, headers, ip, rid, outcome["status"], started, info)
            await send(message)

        try:
            replay = await self._admit(scope, receive, headers, ip, info, outcome["extra"])
        except Rejected as r:
            self.state.metrics.count_rejected(r.reason)
            await _send_error(send_out, r.status, r.message, r.code, r.headers)
            return
        try:
            await self.app(scope, replay, send_out)
        except Exception:  # a bug, never the client's fault: log it, answer 500 in our shape
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not outcome["started"]:
                await _send_error(send_out, 500, "internal error; see the server log.", "internal")
        finally:
            if not outcome["done"]:  # client went away mid-stream: still one audit line
                outcome["done"] = True
                self._finish(scope, headers, ip, rid, outcome["status"], started, info)

    def _version(self) -> str:
        return self.state.router.champion.version

    async def _admit(self, scope, receive, headers: Headers, ip, info: dict, extra: dict):
        """Checks in order; returns a receive that replays the (size-checked) body."""
        st = self.state
        if not st.allow.allows(ip):
            raise Rejected(
                403,
                f"client address {ip} is not in serve.allow_cidrs.",
                "ip_not_allowed",
                "forbidden",
            )
        if scope["path"] not in PUBLIC:
            key = None
            if st.keys.enabled:
                key = st.keys.verify(_presented_key(headers))
                if key is None:
                    raise Rejected(
                        401,
                        "missing or invalid API key. Fix: send 'Authorization: Bearer <key>' "
                        "or 'x-api-key: <key>'.",
                        "invalid_api_key",
                        "unauthorized",
                    )
            info["key"] = key
            admin = scope["path"].startswith("/admin/")
            if admin and self._route(scope)[1] == Match.FULL:  # before the body is read
                _require_admin(st, key, ip)
            decision = st.limiter.check(key.id if key else f"ip:{ip}")
            extra.update(decision.headers())
            if not decision.allowed:
                raise Rejected(
                    429,
                    f"rate limit of {decision.limit} requests per minute reached; retry after "
                    f"{decision.retry_after_s} s.",
                    "rate_limit_exceeded",
                    "rate_limited",
                    decision.headers(),
                )
        body = await self._read_body(scope, receive, headers)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for http.disconnect

        return replay

    async def _read_body(self, scope, receive, headers: Headers) -> bytes:
        limit = self.state.settings.max_body_bytes
        too_large = Rejected(
            413,
            f"request body larger than {limit} bytes (serve.max_body_bytes). Fix: send less "
            "text per request.",
            "body_too_large",
            "too_large",
        )
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise too_large
        if scope["method"] not in BODY_METHODS and length in (None, "0"):
            return b""
        chunks, size = [], 0
        while True:  # also bounds chunked bodies, which carry no Content-Length
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    def _finish(self, scope, headers: Headers, ip, rid: str, status: int, started: float, info):
        seconds = time.perf_counter() - started
        version = info.get("model_version") or self._version()
        template = self._template(scope)
        st = self.state
        try:
            method = scope["method"] if scope["method"] in METHODS else "other"
            st.metrics.observe_request(template, method, status, version, seconds)
            if status in (400, 422):
                st.metrics.count_rejected("bad_request")
            if st.audit is not None:
                key = info.get("key")
                st.audit.write(
                    rid,
                    ip,
                    key.id if key else None,
                    headers.get("user-agent"),
                    scope["method"],
                    scope["path"],
                    status,
                    seconds,
                    version,
                )
        except Exception:  # bookkeeping must never turn an answer into an error
            log.exception("audit/metrics failed for request %s", rid)

    def _route(self, scope) -> tuple[BaseRoute | None, Match]:
        """The route that takes this request, as Starlette's router picks it: the first
        full match, else the first with the path but another method (PARTIAL: a 405)."""
        partial = None
        for route in self.routes:
            match = route.matches(scope)[0]
            if match == Match.FULL:
                return route, match
            if match == Match.PARTIAL and partial is None:
                partial = route
        return partial, Match.PARTIAL if partial else Match.NONE

    def _template(self, scope) -> str:
        """The path template of the route the request matched (or would have, had the gate
        not refused it: no route ran then); "other" for a path no route has."""
        route = scope.get("route")
        if not (isinstance(getattr(route, "path", None), str) and route.path):
            route = self._route(scope)[0]
        return route.path if route is not None else "other"


def _require_admin(state: ServeState, key, ip: str | None) -> None:
    """403 unless the key has role admin; without keys, unless the client is this machine."""
    if state.keys.enabled:
        if key is None or key.role != "admin":
            raise Rejected(
                403, "this route needs an admin API key (role admin).", "admin_only", "forbidden"
            )
        return
    try:
        local = ipaddress.ip_address(ip or "").is_loopback
    except ValueError:
        local = False
    if not local:  # without keys, only the machine itself may swap models
        raise Rejected(
            403,
            "admin routes without API keys are allowed from this machine only. Fix: configure "
            "serve.api_keys_file with an admin key.",
            "admin_only",
            "forbidden",
        )


def new_request_id() -> str:
    """24 characters of base32 (120 random bits): no digit runs, so PII masking of log
    lines never mistakes one for a phone or card number."""
    return base64.b32encode(os.urandom(15)).decode("ascii").lower()


def _presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key")


async def _send_error(send, status: int, message: str, code: str, headers=None) -> None:
    body = json.dumps(error_body(status, message, code)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})
