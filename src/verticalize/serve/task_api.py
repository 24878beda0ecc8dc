"""The task routes: /v1/classify and /v1/ner (one text or a list), and /v1/feedback, which
rates an earlier answer (by its x-request-id) or a text and prediction given directly."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from verticalize.serve.handling import (
    ApiError,
    check_texts,
    pick_slot,
    remember,
    run_on,
    state_of,
)
from verticalize.serve.openai_schema import (
    ERRORS,
    ClassifyResponse,
    FeedbackRequest,
    NerResponse,
    TextsRequest,
)

router = APIRouter(responses=ERRORS)


@router.post("/v1/classify", response_model=ClassifyResponse, summary="Classify texts")
async def classify(req: TextsRequest, request: Request) -> JSONResponse:
    """The label, its probability and every label's probability, per text."""
    return await _texts_route(req, request, "classify", "/v1/classify")


@router.post("/v1/ner", response_model=NerResponse, summary="Named entities in texts")
async def ner(req: TextsRequest, request: Request) -> JSONResponse:
    """Entities with character offsets {start, end, type, text, score}, per text."""
    return await _texts_route(req, request, "ner", "/v1/ner")


async def _texts_route(req: TextsRequest, request: Request, kind: str, route: str) -> JSONResponse:
    state = state_of(request)
    texts = [req.input] if isinstance(req.input, str) else req.input
    slot = pick_slot(request, kind, req.model)
    try:
        counts = check_texts(texts, slot, state)
        results = await run_on(slot, state, (kind,), texts, counts)
    finally:
        slot.release()
    remember(request, route, slot, texts, results, request.state.started)
    if kind == "classify":
        data = [{"index": i, **r} for i, r in enumerate(results)]
    else:
        data = [{"index": i, "entities": r} for i, r in enumerate(results)]
    n = sum(counts)
    usage = {"prompt_tokens": n, "completion_tokens": 0, "total_tokens": n}
    return JSONResponse({"object": "list", "model": slot.version, "data": data, "usage": usage})


@router.post("/v1/feedback", summary="Rate an answer, optionally with a correction")
async def feedback(req: FeedbackRequest, request: Request) -> JSONResponse:
    """Stores the rating (1-5), correction and comment with what was asked and answered;
    the record's kind (wrong / slow / other) feeds the metrics, corrections become training
    data (`verticalize feedback export`)."""
    state = state_of(request)
    record = {"rating": req.rating, "correction": req.correction, "comment": req.comment}
    if req.request_id:
        earlier = state.recent.get(req.request_id)
        if earlier is None:
            raise ApiError(
                404,
                f"request_id {req.request_id!r} is unknown: only the last "
                f"{state.recent.capacity} answers are remembered, and only by the server that "
                "gave them. Fix: send text and prediction instead.",
                "unknown_request_id",
                "request_id",
            )
        asked, prediction = earlier["input"], earlier["output"]
        if req.index is not None:
            if not isinstance(prediction, list) or req.index >= len(prediction):
                raise ApiError(
                    400, f"index {req.index}: no such text in that request.", "bad_index", "index"
                )
            prediction = prediction[req.index]
            if isinstance(asked, list) and len(asked) == len(earlier["output"]):
                asked = asked[req.index]  # the one text rated, not the whole batch
        record |= {
            "request_id": req.request_id,
            "route": earlier["route"],
            "model_version": earlier["model_version"],
            "task": earlier["task"],
            "input": asked,
            "index": req.index,
            "prediction": prediction,
            "latency_ms": earlier["latency_ms"],
        }
    elif req.text is not None:
        slot = state.router.champion
        record |= {
            "model_version": slot.version,
            "task": slot.engine.task,
            "input": req.text,
            "prediction": req.prediction,
        }
    else:
        raise ApiError(
            400,
            "give request_id (the x-request-id of the answer) or text (and prediction).",
            "missing_subject",
            "request_id",
        )
    stored = await _record(state, record)
    state.metrics.observe_feedback(stored["model_version"], stored["kind"], req.rating)
    return JSONResponse({"id": stored["id"], "kind": stored["kind"]})


async def _record(state, record: dict) -> dict:
    import asyncio

    return await asyncio.to_thread(state.feedback.record, record)  # fsync: off the event loop
