"""The FastAPI application: `create_app(settings, target)` loads the model(s), wires the
security gate, audit log, metrics, feedback store, A/B router and hot reload, and mounts the
routes. Every error a client can cause is a 4xx in the OpenAI shape
{"error": {"message", "type", "code", "param"}}; nothing a client sends gives a 500."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Annotated

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from verticalize.config import Config, ServeConfig
from verticalize.errors import VerticalizeError
from verticalize.serve import openai_api, task_api
from verticalize.serve.api_schema import served_openapi
from verticalize.serve.gate import Gate
from verticalize.serve.handling import ApiError, ServeState, error_body, state_of
from verticalize.serve.openai_schema import ERRORS, ReloadRequest
from verticalize.serve.routing import Reloader, Router, make_loader
from verticalize.serve.targets import Resolved, resolve_target
from verticalize.version import __version__

log = logging.getLogger("verticalize.serve")
PROBE_ERRORS = {403: ERRORS[403]}  # probes need no key, but the allow-list applies
# why json.loads could not read a body FastAPI answered "error parsing the body" for
UNREADABLE = {UnicodeDecodeError: "not UTF-8 text", RecursionError: "nested too deeply"}


def create_app(
    settings: ServeConfig,
    target: str | Path,
    tracking_uri: str | None = None,
    project: Config | None = None,
) -> FastAPI:
    """The service for `target` (a run folder, a model folder or models:/name@alias) and, when
    settings.ab.challenger is set, a challenger; both are loaded before this returns.
    `project` (the project's config, when serve was given its YAML) supplies the data.pii
    settings feedback is masked with. Raises ServeError (bad keys file, CIDR, missing model …)
    with the fix."""
    from verticalize.serve.audit import AuditLog
    from verticalize.serve.feedback import FeedbackStore, RecentRequests
    from verticalize.serve.metrics import ServeMetrics
    from verticalize.serve.privacy import feedback_masker, mask_service_logs
    from verticalize.serve.security import AllowList, KeyStore, RateLimiter

    keys = KeyStore.load(settings.api_keys_file)  # bad settings fail before a model loads
    limiter, allow = RateLimiter(settings.rate_limit_per_minute), AllowList(settings.allow_cidrs)
    resolved = resolve_target(str(target), tracking_uri)
    masker = feedback_masker(project, resolved.run_dir)
    mask_service_logs(masker.mask_log_text)
    metrics = ServeMetrics()
    load_slot = make_loader(settings, metrics)
    champion = load_slot(resolved, "champion")
    challenger = None
    if settings.ab.challenger:
        challenger = load_slot(resolve_target(settings.ab.challenger, tracking_uri), "challenger")
    router = Router(champion, challenger, settings.ab.challenger_weight)
    for slot in router.slots():
        slot.publish()
    serve_dir = _serve_dir(resolved)
    state = ServeState(
        settings=settings,
        router=router,
        reloader=Reloader(router, load_slot, tracking_uri, settings.reload_interval_s),
        metrics=metrics,
        keys=keys,
        limiter=limiter,
        allow=allow,
        audit=AuditLog(
            Path(settings.audit_log or serve_dir / "audit.log"),
            settings.audit_rotate_bytes,
            settings.audit_backups,
            mask=masker.mask_log_text,
        ),
        recent=RecentRequests(),
        feedback=FeedbackStore(
            Path(settings.feedback_dir or serve_dir / "feedback"), settings.slow_ms, masker
        ),
    )
    if not keys.enabled:
        log.warning(
            "no API keys configured (serve.api_keys_file / $VERTICALIZE_API_KEYS): the service "
            "is open to every client the allow-list admits; use this for local work only"
        )
    app = FastAPI(
        title="verticalize",
        version=__version__,
        summary=f"Serving {champion.version} ({champion.engine.task}).",
        lifespan=_lifespan,
    )
    app.state.serve = state
    routers = (task_api.router, openai_api.router)
    for router in routers:
        app.include_router(router)  # no prefix: the routers' paths are the app's
    _add_operations(app)
    _add_error_handlers(app)
    # every route with its template; FastAPI may list an included router as one entry
    routes = [r for r in app.routes if isinstance(getattr(r, "path", None), str) and r.path]
    routes += [r for router in routers for r in router.routes]
    app.openapi = served_openapi(app, state, routes)
    app.add_middleware(Gate, state=state, routes=routes)
    return app


def _serve_dir(resolved: Resolved) -> Path:
    """<run>/serve for a run's model; ./serve for a model folder or registry model."""
    return (resolved.run_dir or Path.cwd()) / "serve"


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    state: ServeState = app.state.serve
    for slot in state.router.slots():
        slot.batcher.start()
    polling = None
    watched = any(s.resolved.registry_alias for s in state.router.slots())
    if watched and state.settings.reload_interval_s > 0:
        polling = asyncio.get_running_loop().create_task(state.reloader.poll())
    try:
        yield
    finally:
        state.ready = False
        if polling is not None:
            polling.cancel()
        await state.reloader.wait_retired()
        for slot in state.router.slots():
            await slot.batcher.close()
        state.audit.close()


def _add_operations(app: FastAPI) -> None:
    @app.get("/healthz", summary="Liveness: the process answers", responses=PROBE_ERRORS)
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: models loaded and taking requests",
        responses=PROBE_ERRORS | {503: {"description": "Shutting down."}},
    )
    async def readyz(request: Request) -> JSONResponse:
        state = state_of(request)
        models = [
            {
                "version": s.version,
                "task": s.engine.task,
                "role": s.role,
                "runtime": s.engine.runtime,
                "queue": s.batcher.depth,
            }
            for s in state.router.slots()
        ]
        status = 200 if state.ready else 503
        body = {"status": "ready" if state.ready else "shutting down", "models": models}
        return JSONResponse(body, status_code=status)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}} | PROBE_ERRORS,
    )
    async def metrics(request: Request) -> Response:
        body, content_type = state_of(request).metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/admin/reload", responses=ERRORS, summary="Hot-reload a model version (admin key)")
    async def reload(
        request: Request, req: Annotated[ReloadRequest | None, Body()] = None
    ) -> JSONResponse:
        """Loads the target again (or `target`) and swaps it in without dropping requests;
        with `force: false` an unchanged version is left alone. The gate has checked the
        admin key before the body was read."""
        state = state_of(request)
        req = req or ReloadRequest()
        try:
            result = await state.reloader.reload(req.role, req.target, req.force)
        except (VerticalizeError, LookupError, OSError, ValueError) as e:
            raise ApiError(
                400, f"reload failed, still serving the old version: {e}", "reload_failed"
            ) from None
        return JSONResponse(result)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            where = next(e for e in errors if e.get("type") == "json_invalid")
            return _invalid_json((where.get("ctx") or {}).get("error", "malformed JSON"))
        if errors and tuple(errors[0]["loc"]) == ("body",) and errors[0]["type"] != "missing":
            message = "the request body must be a JSON object (Content-Type: application/json)."
            return JSONResponse(error_body(422, message, "invalid_request", "body"), 422)
        parts = [f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        param = _where(errors[0]["loc"]) if errors else None
        body = error_body(422, "; ".join(parts) + more, "invalid_request", param)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__  # FastAPI's 400 for a body json.loads could not read
        if exc.status_code == 400 and cause is not None:
            return _invalid_json(UNREADABLE.get(type(cause), "unreadable"))
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path}; see /docs for the routes."
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(exc.status_code, message, code),
            status_code=exc.status_code,
            headers=exc.headers,
        )


def _invalid_json(detail: str) -> JSONResponse:
    body = error_body(400, f"the request body is not valid JSON ({detail}).", "invalid_json")
    return JSONResponse(body, status_code=400)


def _where(loc) -> str:
    parts = [str(x) for x in loc if x != "body"]
    return ".".join(parts) or "body"
