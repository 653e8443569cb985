"""The app factory: ``create_app(settings)`` builds a fresh, independent service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from service import paths
from service.api import docs, libretranslate, pages
from service.api.edge import ConnectionCap
from service.api.errors import install_error_handlers
from service.api.middleware import ApiKeys, BodyLimit, RequestContext
from service.api.routes import router
from service.settings import Settings
from service.state import ServiceState
from service.workers import worker_index


def create_app(settings: Settings | None = None) -> FastAPI:
    state = ServiceState(settings or Settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load in the background: /health/live answers at once, /health/ready once warm.
        loading = asyncio.create_task(state.load())
        if worker_index() is not None:
            # One of SERVICE_WORKERS: the others answer meanwhile, so listen (uvicorn does
            # after this) only once loaded, and a restarted worker turns no request away.
            await asyncio.shield(loading)
        yield
        await loading
        await state.shutdown()

    app = FastAPI(
        title="attn-translate",
        summary="Attention seq2seq (GRU + Bahdanau/Luong) translation with ONNX Runtime",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by service.api.docs from vendored files, not from a CDN
        redoc_url=None,
    )
    app.state.service = state
    app.include_router(router)
    app.include_router(pages.router)
    app.include_router(docs.router)
    if prefix := state.settings.libretranslate_prefix:
        app.include_router(libretranslate.router, prefix=prefix)
    app.mount(paths.STATIC, StaticFiles(directory=pages.STATIC_DIR), name="static")
    install_error_handlers(app)
    # Added last = outermost: request ids and metrics cover every response, CORS headers too.
    s = state.settings
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes, timeout_s=s.body_timeout_s)
    keyed = paths.KEYED | ({paths.METRICS} if s.protect_metrics else set())
    app.add_middleware(ApiKeys, keys=s.key_list(), paths=keyed)
    if origins := state.settings.origin_list():
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key",
                                          "X-Request-ID"], expose_headers=["X-Request-ID"])
    # Open connections, kept by the server's protocol (service.api.edge) when it runs one.
    app.state.connections = set()
    app.add_middleware(ConnectionCap, connections=app.state.connections,
                       limit=s.max_connections)
    if s.libretranslate_prefix:  # errors under it, wherever they arise, in LibreTranslate's shape
        app.add_middleware(libretranslate.LibreErrors, prefix=s.libretranslate_prefix)
    routes = set(paths.LABELLED)
    if s.libretranslate_prefix:
        routes |= {s.libretranslate_prefix + r.path for r in libretranslate.router.routes
                   if isinstance(r, APIRoute)}
    app.add_middleware(RequestContext, metrics=state.metrics, routes=frozenset(routes))
    return app
