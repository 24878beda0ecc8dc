"""The playground's chat: the conversation a page sends, and the tokens of a run's generation
model streamed back as server-sent events (`data: {"delta": …}`, then `{"done": …}` or
`{"error": …}`), generated in a worker thread through the serving engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from verticalize.web.playground_models import CACHE, Loaded

ROLES = ("system", "user", "assistant")
MAX_TURNS = 64
MAX_CHARS = 20_000  # one text, and the whole conversation: a page, not a document store
MAX_NEW_TOKENS = 512


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def conversation(history: str, text: str, system: str = "") -> list[dict]:
    """The messages to answer: `system` (if any), the earlier turns the page sends as JSON,
    and the new user `text`; 422 naming the field for anything malformed."""
    try:
        turns = json.loads(history or "[]")
    except json.JSONDecodeError as e:
        raise HTTPException(422, f"messages: not JSON ({e.msg}). Fix: send a JSON list.") from None
    if not isinstance(turns, list) or len(turns) > MAX_TURNS:
        raise HTTPException(
            422, f"messages: give a JSON list of at most {MAX_TURNS} turns. Fix: clear the chat."
        )
    messages = [{"role": "system", "content": system.strip()}] if system.strip() else []
    for i, turn in enumerate(turns):
        ok = isinstance(turn, dict) and turn.get("role") in ROLES
        if not ok or not isinstance(turn.get("content"), str):
            raise HTTPException(
                422,
                f"messages[{i}]: {str(turn)[:80]!r} is not a turn. Fix: each turn is "
                '{"role": "user" | "assistant" | "system", "content": "<text>"}.',
            )
        messages.append({"role": turn["role"], "content": turn["content"]})
    messages.append({"role": "user", "content": text})
    if sum(len(m["content"]) for m in messages) > MAX_CHARS:
        raise HTTPException(
            422, f"messages: the conversation is over {MAX_CHARS} characters. Fix: clear the chat."
        )
    return messages


async def local_chat(
    folder: Path, task: str, messages: list[dict], max_tokens: int, temperature: float
) -> AsyncIterator[str]:
    """Load the model (in a thread), check the prompt (422s come before the stream starts),
    and return the event stream of the answer."""
    from transformers import AsyncTextIteratorStreamer

    from verticalize.serve.generation import GenRequest, PromptError

    loaded = await run_in_threadpool(CACHE.get, folder, task)
    engine = loaded.engine
    try:
        prompt = engine.chat_prompt(messages)
    except PromptError as e:
        raise HTTPException(422, f"messages: {e}") from None
    room = engine.max_tokens - len(prompt)
    if room < 1:
        raise HTTPException(
            422,
            f"messages: the conversation is {len(prompt)} tokens; the model takes at most "
            f"{engine.max_tokens}. Fix: clear the chat.",
        )
    streamer = AsyncTextIteratorStreamer(
        engine.tokenizer, skip_prompt=True, skip_special_tokens=True
    )
    gen = GenRequest(prompt, min(max_tokens, room), [], streamer)
    sampling = engine.sampling(temperature, None, None)
    return _events(loaded, gen, sampling)


def _generate(loaded: Loaded, gen, sampling):
    try:
        with loaded.lock:  # one generation per model at a time
            return loaded.engine.run_batch(("stream", sampling), [gen])[0]
    finally:
        gen.streamer.end()  # the reader must learn the stream ended, whatever happened


async def _events(loaded: Loaded, gen, sampling) -> AsyncIterator[str]:
    job = asyncio.ensure_future(asyncio.to_thread(_generate, loaded, gen, sampling))
    try:
        async for piece in gen.streamer:
            if piece:
                yield sse({"delta": piece})
        result = await job
        yield sse({"done": True, "finish_reason": result.finish_reason})
    except Exception as e:  # the status line is sent: report the failure as an event
        yield sse({"error": f"generation failed: {e}"})
    finally:
        gen.cancelled.set()  # the page went away or stopped: end the generation early
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it
