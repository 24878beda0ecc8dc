"""The playground: try a project's trained model (/try/<project>) or a running `verticalize
serve` (/playground). Classification shows every label's probability, NER highlights the
entities, generation is a chat streamed token by token. Models load and run in worker
threads, so no request waits on another's model."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from verticalize.errors import VerticalizeError
from verticalize.web.pages import project, render, root
from verticalize.web.playground_chat import MAX_CHARS, MAX_NEW_TOKENS, conversation, local_chat
from verticalize.web.playground_models import chats, predict_text, project_model
from verticalize.web.playground_remote import Service
from verticalize.web.playground_view import result_view
from verticalize.web.projects import Project, find_projects

router = APIRouter()
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/playground", response_class=HTMLResponse)
def playground_page(request: Request):
    projects = find_projects(root(request))
    rows = []
    for p in projects:
        found = project_model(p)
        if found is not None:
            rows.append({"key": p.key, "task": found[1]})
    return render(
        request,
        "playground.html.j2",
        nav="playground",
        rows=rows,
        untrained=len(projects) - len(rows),
        max_tokens=MAX_NEW_TOKENS,
    )


@router.get("/try/{key:path}", response_class=HTMLResponse)
def try_page(request: Request, key: str):
    p = project(request, key)
    found = project_model(p)
    return render(
        request,
        "try.html.j2",
        project=p,
        active_tab="try",
        task=found[1] if found else None,
        model_path=_shown(p, found[0]) if found else None,
        max_tokens=MAX_NEW_TOKENS,
    )


@router.post("/try/predict/{key:path}", response_class=HTMLResponse)
def try_predict(request: Request, key: str, text: str = Form("")):
    """One text through the project's classification or NER model (this runs in a worker
    thread: the first call loads the model)."""
    p, (folder, task) = _trained(request, key)
    text = _text(text)
    if chats(task):
        raise HTTPException(422, f"task: this is a {task} model that chats. Fix: use the chat.")
    try:
        result = predict_text(folder, task, text)
    except VerticalizeError as e:
        raise HTTPException(422, str(e)) from None
    return _result(request, text, result, f"{task} model {_shown(p, folder)} of {p.key}")


@router.post("/try/chat/{key:path}")
async def try_chat(
    request: Request,
    key: str,
    text: str = Form(""),
    messages: str = Form("[]"),
    system: str = Form(""),
    max_tokens: str = Form(""),
    temperature: str = Form(""),
):
    """The answer of the project's generation model, streamed as server-sent events."""
    _, (folder, task) = await run_in_threadpool(_trained, request, key)
    if not chats(task):
        raise HTTPException(422, f"task: this is a {task} model. Fix: use the text form.")
    chat = conversation(messages, _text(text), system)
    try:
        events = await local_chat(folder, task, chat, *_settings(max_tokens, temperature))
    except VerticalizeError as e:
        raise HTTPException(422, str(e)) from None
    return StreamingResponse(events, media_type="text/event-stream", headers=STREAM_HEADERS)


@router.post("/playground/remote")
async def try_remote(
    request: Request,
    url: str = Form(""),
    key: str = Form(""),
    text: str = Form(""),
    messages: str = Form("[]"),
    system: str = Form(""),
    max_tokens: str = Form(""),
    temperature: str = Form(""),
):
    """`text` through a running `verticalize serve` at `url`, called with `key`: the result
    rendered like a project's, or for a generation model the chat streamed."""
    text = _text(text)
    service = Service(url, key)
    handed_over = False
    try:
        task, version = await service.task()
        if chats(task):
            chat = conversation(messages, text, system)
            events = await service.chat(chat, *_settings(max_tokens, temperature))
            handed_over = True  # the stream closes the connection when it ends
            return StreamingResponse(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        result = await service.predict(task, text)
    finally:
        if not handed_over:
            await service.client.aclose()
    return _result(request, text, result, f"{task} model {version} at {service.url}")


def _trained(request: Request, key: str):
    p = project(request, key)
    found = project_model(p)
    if found is None:
        raise HTTPException(
            409, f"project {p.key!r} has no trained model yet. Fix: run it (Run tab) first."
        )
    return p, found


def _shown(p: Project, folder: Path) -> str:
    """The model folder as the page shows it: relative to the project when inside it."""
    return (folder.relative_to(p.folder) if folder.is_relative_to(p.folder) else folder).as_posix()


def _text(text: str) -> str:
    if not text.strip():
        raise HTTPException(422, "text: it is empty. Fix: type a text to try.")
    if len(text) > MAX_CHARS:
        raise HTTPException(
            422, f"text: {len(text)} characters, over {MAX_CHARS}. Fix: try a shorter text."
        )
    return text


def _settings(max_tokens: str, temperature: str) -> tuple[int, float]:
    """(max new tokens, temperature) from the chat form: blank gives the defaults."""
    try:
        tokens = int(max_tokens) if max_tokens.strip() else 200
        heat = float(temperature) if temperature.strip() else 0.7
    except ValueError:
        raise HTTPException(
            422,
            f"max_tokens / temperature: {max_tokens!r} / {temperature!r} are not numbers. "
            f"Fix: a whole number 1-{MAX_NEW_TOKENS} and a temperature 0-2.",
        ) from None
    if not 1 <= tokens <= MAX_NEW_TOKENS:
        raise HTTPException(
            422, f"max_tokens: {tokens}. Fix: a whole number from 1 to {MAX_NEW_TOKENS}."
        )
    if not 0 <= heat <= 2:
        raise HTTPException(422, f"temperature: {heat}. Fix: a number from 0 (greedy) to 2.")
    return tokens, heat


def _result(request: Request, text: str, result: dict, source: str):
    return render(
        request, "playground_result.html.j2", view=result_view(text, result), source=source
    )
