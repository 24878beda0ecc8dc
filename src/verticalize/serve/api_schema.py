"""The OpenAPI schema the service publishes, true to what it answers: only the routes its
loaded models serve (a classifier's schema has no chat, completions or ner), and the limits
of its settings and models as schema constraints (serve.max_texts, the embedding size).
Built again when a reload changes what is served."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute

from verticalize.config import ServeConfig
from verticalize.serve.handling import ROUTES, ServeState, routes_for

# request bodies whose text lists are bounded by serve.max_texts: (schema, field)
TEXT_LISTS = (
    ("TextsRequest", "input"),
    ("EmbeddingRequest", "input"),
    ("CompletionRequest", "prompt"),
)


def served_openapi(
    app: FastAPI, state: ServeState, routes: Sequence[BaseRoute]
) -> Callable[[], dict]:
    """A replacement for `app.openapi`: the schema of `routes` for the models served now."""
    built: dict[tuple, dict] = {}

    def openapi() -> dict:
        slots = state.router.slots()
        kinds = tuple(sorted({k for s in slots for k in s.engine.kinds}))
        sizes = tuple(sorted({s.engine.embedding_size or 0 for s in slots}))
        if (kinds, sizes) not in built:
            built.clear()
            built[kinds, sizes] = _schema(app, routes, state.settings, kinds, sizes)
        return built[kinds, sizes]

    return openapi


def _schema(
    app: FastAPI,
    routes: Sequence[BaseRoute],
    settings: ServeConfig,
    kinds: tuple[str, ...],
    sizes: tuple[int, ...],
) -> dict:
    unserved = {r for paths in ROUTES.values() for r in paths} - set(routes_for(kinds))
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=[r for r in routes if getattr(r, "path", None) not in unserved],
    )
    components = schema.get("components", {}).get("schemas", {})
    for name, field in TEXT_LISTS:
        prop = components.get(name, {}).get("properties", {}).get(field, {})
        for option in prop.get("anyOf", []):
            if option.get("type") == "array":
                option["maxItems"] = settings.max_texts
    dimensions = components.get("EmbeddingRequest", {}).get("properties", {}).get("dimensions")
    if dimensions is not None:  # the server makes embeddings of its model's size only
        one = [sizes[0]] if len(sizes) == 1 and sizes[0] else []
        dimensions.pop("anyOf", None)
        dimensions["enum"] = [*one, None]
    return schema
