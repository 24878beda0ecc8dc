"""The console's FastAPI app: security on every request, the project / job / live pages
here, and the routers of the other pages (data, evaluation, review, runs, registry,
playground)."""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from verticalize.errors import VerticalizeError
from verticalize.web import data_views, evaluation, playground, registry_page, review, tracked
from verticalize.web.filecache import while_unchanged
from verticalize.web.forms import create_project, form_fields
from verticalize.web.jobs import STAGES, JobStore, Ticker
from verticalize.web.live import live_state, metric_rows
from verticalize.web.pages import project, render, root, store
from verticalize.web.projects import config_error, find_projects, load, run_dir
from verticalize.web.security import check


def create_app(folder: Path, token: str | None = None, tick_every: float = 0.5) -> FastAPI:
    folder = Path(folder).resolve()
    job_store = JobStore(folder)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ticker = Ticker(job_store, tick_every)
        ticker.start()
        threading.Thread(target=_warm, args=(folder,), daemon=True, name="console-warm").start()
        yield
        ticker.halt.set()

    app = FastAPI(title="verticalize console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.root, app.state.store, app.state.token = folder, job_store, token

    @app.middleware("http")
    async def guard(request: Request, call_next):
        refusal = check(request, request.app.state.token)
        if refusal is not None:
            return refusal
        response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if "text/html" in request.headers.get("accept", ""):
            return render(request, "error.html.j2", exc.status_code, detail=exc.detail)
        return PlainTextResponse(f"{exc.status_code}: {exc.detail}", status_code=exc.status_code)

    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for module in (data_views, evaluation, review, tracked, registry_page, playground):
        app.include_router(module.router)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        rows = []
        for p in find_projects(root(request)):
            row = {"key": p.key, "task": None, "job": store(request).latest(p.key)}
            try:
                row["task"] = load(p.config_path).task
            except (VerticalizeError, OSError):
                row["task"] = "(config does not load)"
            folder = run_dir(p)
            if folder is not None:
                row["headline"] = report_summary(folder / "eval" / "report.json")
            rows.append(row)
        return render(request, "index.html.j2", rows=rows, root=root(request))

    @app.get("/new", response_class=HTMLResponse)
    def new_form(request: Request):
        return render(
            request,
            "new_project.html.j2",
            fields=form_fields(),
            values={},
            errors={},
            root=root(request),
        )

    @app.post("/new", response_class=HTMLResponse)
    async def new_submit(request: Request):
        form = {k: str(v) for k, v in (await request.form()).items()}
        created, errors = create_project(root(request), form)
        if created is None:
            return render(
                request,
                "new_project.html.j2",
                422,
                fields=form_fields(),
                values=form,
                errors=errors,
                root=root(request),
            )
        key = created.parent.relative_to(root(request)).as_posix()
        return Response(status_code=204, headers={"HX-Redirect": f"/project/{key}"})

    @app.get("/project/{key:path}", response_class=HTMLResponse)
    def project_page(request: Request, key: str):
        p = project(request, key)
        folder = run_dir(p)
        plan_file = folder / "plan" / "plan.json" if folder else None
        plan = (
            json.loads(plan_file.read_text("utf-8")) if plan_file and plan_file.is_file() else None
        )
        return render(
            request,
            "project.html.j2",
            project=p,
            active_tab="project",
            plan=plan,
            jobs=store(request).all(p.key)[:20],
            state=live_state(p, store(request)),
            config_error=config_error(p.config_path),
        )

    @app.get("/config/{key:path}", response_class=HTMLResponse)
    def config_page(request: Request, key: str):
        p = project(request, key)
        text = p.config_path.read_text(encoding="utf-8")
        return render(request, "config.html.j2", project=p, active_tab="config", text=text)

    @app.post("/config/{key:path}", response_class=HTMLResponse)
    def config_save(request: Request, key: str, yaml_text: str = Form(alias="yaml")):
        p = project(request, key)
        candidate = p.folder / ".verticalize.yaml.check"
        candidate.write_text(yaml_text, encoding="utf-8")
        try:
            error = config_error(candidate)
        finally:
            candidate.unlink(missing_ok=True)
        if error is None:
            p.config_path.write_text(yaml_text, encoding="utf-8")
        else:
            error = error.replace(str(candidate), p.config_path.name)
        return render(
            request,
            "config.html.j2",
            200 if error is None else 422,
            project=p,
            active_tab="config",
            text=yaml_text,
            error=error,
            saved=error is None,
        )

    @app.post("/jobs/{key:path}/{job_id}/stop")
    def stop_job(request: Request, key: str, job_id: str):
        p = project(request, key)
        try:
            job = store(request).get(job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}") from None
        if job["project"] != p.key:
            raise HTTPException(404, f"no job {job_id!r} in {p.key!r}")
        job = store(request).stop(job_id)
        return Response(
            json.dumps(job), media_type="application/json", headers={"HX-Trigger": "jobs-changed"}
        )

    @app.post("/jobs/{key:path}")
    async def start_job(request: Request, key: str):
        p = project(request, key)
        form = await request.form()
        stage = str(form.get("stage", "run"))
        if stage not in STAGES:
            raise HTTPException(422, f"stage {stage!r}: use one of {', '.join(STAGES)}")
        args = ["--force"] if form.get("force") and stage != "plan" else []
        job = store(request).submit(p.key, p.folder, stage, args)
        return Response(
            json.dumps(job),
            status_code=202,
            media_type="application/json",
            headers={"HX-Trigger": "jobs-changed"},
        )

    @app.get("/jobs/{key:path}")
    def list_jobs(request: Request, key: str):
        return store(request).all(project(request, key).key)

    @app.get("/live/{key:path}")
    async def live(request: Request, key: str, since: int = 0, once: bool = False):
        """Server-sent events: `rows` (new train/metrics.jsonl rows) and `state` (stages,
        step / total / ETA, the job and its log's tail), every second."""
        p = project(request, key)

        async def events():
            seen = since
            while True:
                state = live_state(p, store(request))
                folder = run_dir(p)
                if state["rows"] < seen:  # a new training rewrote the log
                    seen = 0
                    yield _event("rows", {"reset": True, "rows": []})
                rows = metric_rows(folder, seen)
                if rows:
                    seen += len(rows)
                    yield _event("rows", {"rows": rows})
                yield _event("state", state)
                if once or await request.is_disconnected():
                    return
                await asyncio.sleep(1.0)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return app


def _warm(folder: Path) -> None:
    """Fill the caches the pages read (configs, report verdicts, MLflow's runs) at start, so
    the first visit does not pay for 50 config validations and opening MLflow (~2 s)."""
    try:
        for p in find_projects(folder):
            if (run := run_dir(p)) is not None:
                report_summary(run / "eval" / "report.json")
        tracked.tracked_rows(folder)
    except Exception:  # a warm-up only: the page itself reports what is wrong
        pass


def report_summary(path: Path) -> str | None:
    """The verdict line of an eval report, kept while the file is unchanged."""

    def read() -> str | None:
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("summary")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None

    return while_unchanged(("summary", path), (path,), read)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
