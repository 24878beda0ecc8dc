"""The OpenAI-compatible routes: /v1/chat/completions and /v1/completions (also streamed as
server-sent events ending in `data: [DONE]`), /v1/embeddings and /v1/models. The `openai`
Python client works against them unchanged."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from verticalize.serve.generation import GenRequest, PromptError, StopScanner
from verticalize.serve.handling import (
    ApiError,
    check_texts,
    check_tokens,
    pick_slot,
    remember,
    request_id,
    run_on,
    state_of,
    submit,
)
from verticalize.serve.openai_schema import (
    ERRORS,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    unsupported,
)

router = APIRouter(responses=ERRORS)
# with "stream": true the answer is server-sent events (each `data:` a JSON chunk, the last
# one `[DONE]`) instead of one JSON object
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
STREAMED = {200: {"content": {"text/event-stream": {"itemSchema": SSE_EVENT}}}}


@router.get("/v1/models", response_model=ModelList, summary="The served model versions")
async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": _cards(request)})


@router.get("/v1/models/{model_id}", response_model=ModelCard, summary="One served version")
async def get_model(model_id: str, request: Request) -> JSONResponse:
    for card in _cards(request):
        if card["id"] == model_id:
            return JSONResponse(card)
    raise ApiError(
        404, f"model {model_id!r} is not served here; see GET /v1/models.", "model_not_found"
    )


def _cards(request: Request) -> list[dict]:
    state = state_of(request)
    return [
        {
            "id": s.version,
            "object": "model",
            "created": int(state.started),
            "owned_by": "verticalize",
            "task": s.engine.task,
            "role": s.role,
        }
        for s in state.router.slots()
    ]


@router.post("/v1/embeddings", response_model=EmbeddingList, summary="Text embeddings")
async def embeddings(req: EmbeddingRequest, request: Request) -> JSONResponse:
    """Mean-pooled, L2-normalised last hidden states of the served model's encoder."""
    state = state_of(request)
    texts = [req.input] if isinstance(req.input, str) else req.input
    slot = pick_slot(request, "embed", req.model)
    try:
        size = slot.engine.embedding_size
        if req.dimensions is not None and req.dimensions != size:
            raise ApiError(
                400,
                f"dimensions: model {slot.version} gives {size}-dimensional embeddings; "
                f"{req.dimensions} cannot be served. Fix: leave dimensions out.",
                "unsupported_dimensions",
                "dimensions",
            )
        counts = check_texts(texts, slot, state)
        vectors = await run_on(slot, state, ("embed",), texts, counts)
    finally:
        slot.release()
    data = [
        {"object": "embedding", "index": i, "embedding": _encode_vector(v, req.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    n = sum(counts)
    usage = {"prompt_tokens": n, "completion_tokens": 0, "total_tokens": n}
    return JSONResponse({"object": "list", "data": data, "model": slot.version, "usage": usage})


def _encode_vector(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as the openai client decodes it
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=STREAMED,
    summary="Chat (OpenAI format)",
)
async def chat_completions(req: ChatCompletionRequest, request: Request):
    """The conversation goes through the model's own chat template; `stream: true` sends
    chat.completion.chunk events."""
    _refuse_unsupported(req)
    messages = [_message(i, m) for i, m in enumerate(req.messages)]
    limit = req.max_completion_tokens or req.max_tokens
    slot = pick_slot(request, "generate", req.model)
    handed_over = False
    try:
        try:
            prompt = slot.engine.chat_prompt(messages)
        except PromptError as e:
            raise ApiError(400, str(e), "invalid_messages", "messages") from None
        gen = _gen_request(request, slot, prompt, limit, req.stop, "messages")
        sampling = slot.engine.sampling(req.temperature, req.top_p, req.seed)
        if req.stream:
            handed_over = True
            return _stream(request, slot, gen, sampling, "chat", messages, _usage_wanted(req))
        [result] = await run_on(slot, state_of(request), ("generate", sampling), [gen])
    finally:
        if not handed_over:
            slot.release()
    rid = request_id(request)
    remember(request, "/v1/chat/completions", slot, messages, result.text, request.state.started)
    body = {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": slot.version,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(result.prompt_tokens, result.completion_tokens),
    }
    return JSONResponse(body)


@router.post(
    "/v1/completions",
    response_model=Completion,
    responses=STREAMED,
    summary="Text completion (OpenAI format)",
)
async def completions(req: CompletionRequest, request: Request):
    """Continues `prompt` (a text, or a list of texts: one choice each)."""
    _refuse_unsupported(req)
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if req.stream and len(prompts) != 1:
        raise ApiError(400, "prompt: stream one prompt at a time.", "stream_one_prompt", "prompt")
    slot = pick_slot(request, "generate", req.model)
    handed_over = False
    try:
        check_texts(prompts, slot, state_of(request), "prompt", blank_ok=True)
        gens = [
            _gen_request(
                request, slot, slot.engine.completion_prompt(p), req.max_tokens, req.stop, "prompt"
            )
            for p in prompts
        ]
        sampling = slot.engine.sampling(req.temperature, req.top_p, req.seed)
        if req.stream:
            handed_over = True
            return _stream(request, slot, gens[0], sampling, "text", req.prompt, _usage_wanted(req))
        results = await run_on(slot, state_of(request), ("generate", sampling), gens)
    finally:
        if not handed_over:
            slot.release()
    remember(
        request,
        "/v1/completions",
        slot,
        req.prompt,
        [r.text for r in results],
        request.state.started,
    )
    body = {
        "id": f"cmpl-{request_id(request)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": slot.version,
        "choices": [
            {"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
            for i, r in enumerate(results)
        ],
        "usage": _usage(
            sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)
        ),
    }
    return JSONResponse(body)


# ---------------------------------------------------------------- helpers


def _refuse_unsupported(req) -> None:
    name = unsupported(req)
    if name is not None:
        raise ApiError(
            400,
            f"{name}: not supported by this server (it serves n=1, no penalties, logprobs or "
            "tools). Fix: leave it out.",
            "unsupported_parameter",
            name,
        )


def _message(i: int, m) -> dict:
    content = m.content
    if isinstance(content, list):
        parts = []
        for part in content:
            if part.type != "text" or part.text is None:
                raise ApiError(
                    400,
                    f"messages[{i}].content: only text parts are supported (got {part.type!r}).",
                    "unsupported_content",
                    "messages",
                )
            parts.append(part.text)
        content = "".join(parts)
    return {"role": m.role, "content": content or ""}


def _gen_request(request: Request, slot, prompt: list[int], limit, stop, field: str) -> GenRequest:
    state = state_of(request)
    check_tokens([len(prompt)], slot, state, field)
    room = slot.engine.max_tokens - len(prompt)  # the model's context must hold both
    cap = min(state.settings.max_new_tokens, max(room, 1))
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4:
        raise ApiError(400, "stop: at most 4 stop strings.", "too_many_stops", "stop")
    return GenRequest(prompt, min(limit or cap, cap), stops)


def _usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _usage_wanted(req) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


def _stream(request: Request, slot, gen: GenRequest, sampling, kind: str, input, usage: bool):
    """Start a streamed generation (one at a time, through the bounded queue) and answer
    with its server-sent events. The slot is released when the generation ends."""
    from transformers import AsyncTextIteratorStreamer

    state = state_of(request)
    gen.streamer = AsyncTextIteratorStreamer(
        slot.engine.tokenizer, skip_prompt=True, skip_special_tokens=True
    )
    try:
        # a key of its own: a stream is never merged into a batch
        future = submit(slot, state, ("stream", sampling, id(gen)), [gen])
    except ApiError:
        slot.release()
        raise
    future.add_done_callback(lambda _: slot.release())
    rid, created, started = request_id(request), int(time.time()), request.state.started
    chunk_id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{rid}"

    def event(delta: str | None, finish: str | None = None, role: bool = False) -> str:
        if kind == "chat":
            d = ({"role": "assistant"} if role else {}) | ({"content": delta} if delta else {})
            choice = {"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}
            obj = "text_completion"
        body = {"id": chunk_id, "object": obj, "created": created, "model": slot.version}
        return _sse(body | {"choices": [choice]})

    async def events() -> AsyncIterator[str]:
        scanner, text = StopScanner(gen.stop), []
        try:
            if kind == "chat":
                yield event("", role=True)
            async for piece in gen.streamer:
                out = scanner.feed(piece)
                if out:
                    text.append(out)
                    yield event(out)
                if scanner.stopped:
                    gen.cancelled.set()  # a stop string: end the generation early
            tail = scanner.flush()
            if tail:
                text.append(tail)
                yield event(tail)
            [result] = await future
            finish = "stop" if scanner.stopped else result.finish_reason
            yield event(None, finish)
            if usage:
                body = {
                    "id": chunk_id,
                    "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                }
                body |= {"created": created, "model": slot.version, "choices": []}
                yield _sse(body | {"usage": _usage(result.prompt_tokens, result.completion_tokens)})
            remember(
                request,
                f"/v1/{'chat/' if kind == 'chat' else ''}completions",
                slot,
                input,
                "".join(text),
                started,
            )
        except Exception as e:  # the status line is sent; report the error as an event
            yield _sse(
                {
                    "error": {
                        "message": f"generation failed: {e}",
                        "type": "server_error",
                        "code": "generation_failed",
                    }
                }
            )
        finally:
            gen.cancelled.set()
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
