"""Rendering shared by every page: the Jinja2 templates, the CSRF value each page carries,
and the console's state (its root folder and job store) as a request sees it."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from verticalize.web.jobs import JobStore
from verticalize.web.projects import Project, get_project
from verticalize.web.security import csrf_value, ensure_csrf_cookie

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# the templates are *.html.j2, which Starlette's default select_autoescape() misses: escape all
templates.env.autoescape = True


def root(request: Request) -> Path:
    return request.app.state.root


def store(request: Request) -> JobStore:
    return request.app.state.store


def project(request: Request, key: str) -> Project:
    """The project at `key` under the console's folder (404 outside it or without a YAML)."""
    return get_project(root(request), key)


def render(request: Request, name: str, status_code: int = 200, **context):
    context.setdefault("nav", "projects")
    response = templates.TemplateResponse(
        request, name, {"csrf": csrf_value(request), **context}, status_code=status_code
    )
    ensure_csrf_cookie(request, response)
    return response
