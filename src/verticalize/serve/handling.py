"""What every route shares: the service's state, errors in the OpenAI shape, input checks
(count, unicode, token length) and running a request on the routed model through its batcher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from verticalize.config import ServeConfig
from verticalize.serve.batching import BatcherClosed, QueueFull
from verticalize.serve.routing import ModelSlot, Reloader, Router

# OpenAI error "type" per status
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "overloaded_error",
}


class ApiError(Exception):
    """A request the service refuses: status, a message saying what to change, and the
    OpenAI error fields. Rendered as {"error": {"message", "type", "code", "param"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.status, self.message, self.code, self.param)


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


@dataclass
class ServeState:
    """Everything the routes and the gate middleware need, on app.state.serve."""

    settings: ServeConfig
    router: Router
    reloader: Reloader
    metrics: Any  # ServeMetrics
    keys: Any  # KeyStore
    limiter: Any  # RateLimiter
    allow: Any  # AllowList
    audit: Any  # AuditLog | None
    recent: Any  # RecentRequests
    feedback: Any  # FeedbackStore
    started: float = field(default_factory=time.time)
    ready: bool = True


def state_of(request: Request) -> ServeState:
    return request.app.state.serve


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def pick_slot(request: Request, kind: str, model: str | None = None) -> ModelSlot:
    """The slot that serves this request (A/B, sticky per user header); 400 when its model
    does not do `kind`. Sets the x-model-version the response will carry."""
    state = state_of(request)
    user = request.headers.get(state.settings.ab.user_header)
    slot = state.router.pick(user, model)
    request.state.model_version = slot.version
    if kind not in slot.engine.kinds:
        slot.release()
        raise ApiError(
            400,
            f"this server runs a {slot.engine.task} model ({slot.version}), which does not do "
            f"{kind}. Routes for {slot.engine.task}: {', '.join(routes_for(slot.engine.kinds))}.",
            "unsupported_task",
        )
    return slot


ROUTES = {  # the routes that ask an engine for each kind of work
    "classify": ["/v1/classify"],
    "ner": ["/v1/ner"],
    "generate": ["/v1/chat/completions", "/v1/completions"],
    "embed": ["/v1/embeddings"],
}


def routes_for(kinds: tuple[str, ...]) -> list[str]:
    return [route for kind in kinds for route in ROUTES.get(kind, [])]


def submit(
    slot: ModelSlot, state: ServeState, key: Hashable, items: list, tokens: Sequence[int] = ()
) -> asyncio.Future:
    """Queue `items` (with their token counts, for the batcher's length buckets) in the
    slot's batcher; 503 + Retry-After when its queue is full."""
    try:
        return slot.batcher.submit(key, items, tokens)
    except QueueFull as e:
        state.metrics.count_rejected("queue_full")
        raise ApiError(
            503,
            f"the server is busy: {e.depth} requests are queued for model {slot.version} "
            f"(serve.max_queue = {state.settings.max_queue}). Retry after {e.retry_after_s} s.",
            "queue_full",
            headers={"Retry-After": str(e.retry_after_s)},
        ) from None
    except BatcherClosed:
        raise ApiError(
            503,
            "the model is being replaced; retry now.",
            "reloading",
            headers={"Retry-After": "1"},
        ) from None


async def run_on(
    slot: ModelSlot, state: ServeState, key: Hashable, items: list, tokens: Sequence[int] = ()
) -> list:
    """The results of `items` (`tokens`: their token counts), computed in some batch of the
    slot's model."""
    return await submit(slot, state, key, items, tokens)


def check_texts(
    texts: list[str],
    slot: ModelSlot,
    state: ServeState,
    field: str = "input",
    blank_ok: bool = False,
) -> list[int]:
    """Token counts of `texts`; 400 naming the limit for too many texts, a text longer than
    serve.max_input_tokens (or the model's own limit), text that is not valid Unicode, or
    (unless `blank_ok`: a prompt may be whitespace) an empty or whitespace-only text."""
    limit_n = state.settings.max_texts
    if len(texts) > limit_n:
        raise ApiError(
            400,
            f"{field}: {len(texts)} texts in one request; the limit is {limit_n} "
            "(serve.max_texts). Fix: split the request.",
            "too_many_inputs",
            field,
        )
    if not texts:
        raise ApiError(400, f"{field}: give at least one text.", "empty_input", field)
    for i, t in enumerate(texts):
        if not (blank_ok or t.strip()):  # the schema's NOT_BLANK pattern says the same
            where = f"{field}[{i}]" if len(texts) > 1 else field
            raise ApiError(
                400,
                f"{where}: the text is empty or only whitespace. Fix: send the text to work on.",
                "empty_text",
                field,
            )
        if not _valid_unicode(t):
            raise ApiError(
                400,
                f"{field}[{i}]: the text contains an unpaired surrogate (invalid Unicode). "
                "Fix: send UTF-8 text.",
                "invalid_text",
                field,
            )
    counts = slot.engine.count_tokens(texts)
    check_tokens(counts, slot, state, field)
    for i, n in enumerate(counts):
        if n == 0:  # a decoder's tokenizer adds no special tokens: nothing to run on
            raise ApiError(400, f"{field}[{i}]: the text is empty.", "empty_text", field)
    return counts


def check_tokens(counts: list[int], slot: ModelSlot, state: ServeState, field: str) -> None:
    limit = min(state.settings.max_input_tokens, slot.engine.max_tokens)
    for i, n in enumerate(counts):
        if n > limit:
            where = f"{field}[{i}]" if len(counts) > 1 else field
            raise ApiError(
                400,
                f"{where}: {n} tokens; the limit is {limit} tokens "
                f"(serve.max_input_tokens = {state.settings.max_input_tokens}, model limit "
                f"{slot.engine.max_tokens}). Fix: shorten or split the text.",
                "input_too_long",
                field,
            )


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def remember(
    request: Request, route: str, slot: ModelSlot, input: Any, output: Any, started: float
) -> float:
    """Keep the answer for /v1/feedback; returns its latency in ms."""
    latency_ms = (time.perf_counter() - started) * 1000
    state_of(request).recent.remember(
        request_id(request), route, slot.version, slot.engine.task, input, output, latency_ms
    )
    return latency_ms
