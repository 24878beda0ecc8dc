"""Trying a running `verticalize serve`: the console calls it with the key the page gave
(never stored, logged or shown: every message the page gets is scrubbed of it) and answers
in the playground's own shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
from fastapi import HTTPException

from verticalize.web.playground_chat import sse

TIMEOUT = httpx.Timeout(120.0, connect=5.0)
TASK_ROUTES = {"classification": "/v1/classify", "ner": "/v1/ner"}


def service_url(raw: str) -> str:
    """The base URL of a service (http or https, a host, no credentials); 422 otherwise."""
    url = raw.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPException(
            422,
            f"url: {raw.strip()[:200]!r} is not an http(s) URL. Fix: give the address "
            "`verticalize serve` prints, e.g. http://127.0.0.1:8000.",
        )
    if parts.username or parts.password:
        raise HTTPException(
            422,
            "url: it carries a user name or password. Fix: give the URL without them and the "
            "API key in the key field.",
        )
    return url


class Service:
    """One call's connection to a service: its URL and the caller's key."""

    def __init__(self, url: str, key: str):
        self.url, self.key = service_url(url), key.strip()
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        self.client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=TIMEOUT)

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "[key]") if self.key else text

    def refused(self, status: int, detail: str) -> HTTPException:
        return HTTPException(status, self.scrub(detail))

    async def call(self, method: str, path: str, **kw) -> dict:
        """The JSON answer of `path`; 4xx with the service's own message when it refuses."""
        try:
            response = await self.client.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise self.refused(
                400,
                f"url: cannot reach {self.url} ({type(e).__name__}: {e}). Fix: check the URL "
                "and that `verticalize serve` is running there.",
            ) from None
        return self._json(response, path)

    def _json(self, response: httpx.Response, path: str) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        message = _message(body) or response.text[:300] or response.reason_phrase
        fix = " Fix: check the API key." if response.status_code in (401, 403) else ""
        status = response.status_code if 400 <= response.status_code < 500 else 400
        raise self.refused(
            status,
            f"the service at {self.url} answered {path} with {response.status_code}: "
            f"{message}.{fix}",
        )

    async def task(self) -> tuple[str, str]:
        """(task, version) of the service's champion model."""
        cards = (await self.call("GET", "/v1/models")).get("data") or []
        card = next((c for c in cards if c.get("role") == "champion"), cards[0] if cards else {})
        if not card.get("task"):
            raise self.refused(400, f"url: {self.url}/v1/models names no model task.")
        return str(card["task"]), str(card.get("id", "?"))

    async def predict(self, task: str, text: str) -> dict:
        """One prediction in verticalize.api.predict's shape."""
        route = TASK_ROUTES.get(task)
        if route is None:
            raise self.refused(
                400, f"the service runs a {task} model; the playground cannot try it."
            )
        item = (await self.call("POST", route, json={"input": text}))["data"][0]
        return {k: v for k, v in item.items() if k != "index"}

    async def chat(self, messages: list[dict], max_tokens: int, temperature: float):
        """Open the service's streamed chat; returns the playground's event stream of it."""
        body = {"messages": messages, "stream": True, "max_tokens": max_tokens}
        body["temperature"] = temperature
        request = self.client.build_request("POST", "/v1/chat/completions", json=body)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as e:
            raise self.refused(400, f"url: cannot reach {self.url} ({type(e).__name__}).") from None
        if not response.is_success:
            await response.aread()
            await response.aclose()
            self._json(response, "/v1/chat/completions")
        return self._relay(response)

    async def _relay(self, response: httpx.Response) -> AsyncIterator[str]:
        finish = None
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                chunk = json.loads(line[5:])
                if "error" in chunk:
                    yield sse({"error": self.scrub(_message(chunk) or "the service failed")})
                    return
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield sse({"delta": piece})
                    finish = choice.get("finish_reason") or finish
            yield sse({"done": True, "finish_reason": finish})
        except (httpx.HTTPError, ValueError) as e:
            yield sse({"error": self.scrub(f"the stream from {self.url} broke ({e})")})
        finally:
            await response.aclose()
            await self.client.aclose()


def _message(body) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or "")
    return None
