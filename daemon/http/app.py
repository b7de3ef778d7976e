"""The FastAPI application: routers, one JSON error shape, no traceback ever reaches a client."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from daemon import __version__
from daemon.errors import AsrboxError
from daemon.http import auth, console, console_api, docs, jobs, live, metrics, openai_api, records, speakers

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape (`error.message/type/param/code`), with `ok: false` as the MQTT replies have it."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status in (401, 403):
        kind = "authentication_error" if status == 401 else "permission_error"
    return {"ok": False, "error": {"message": message, "type": kind, "param": param, "code": code}}


def create_app(core: App) -> FastAPI:
    app = FastAPI(
        title="asrbox",
        version=__version__,
        description="Private, offline speech-to-text: OpenAI-compatible transcription, jobs, records, sessions.",
        docs_url=None,  # served from vendored assets (no CDN): see daemon.http.docs
        redoc_url=None,
    )
    app.state.core = core
    app.state.auth = auth.build_state(core)
    app.state.metrics = metrics.make_registry(core)
    _handlers(app)
    # Open whatever the bind: login/logout, /health, /docs (+ /openapi.json), the console's pages and assets.
    for router in (auth.router, openai_api.public, docs.router, console.router):
        app.include_router(router)
    # Everything else needs a key or the console's session (+ CSRF token) unless bound to loopback.
    guarded = [Depends(auth.require_auth)]
    for module in (openai_api, jobs, records, live, metrics, console_api, speakers):
        app.include_router(module.router, dependencies=guarded)
    docs.mount(app)
    return app


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse(error_body(exc.status_code, detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg", "invalid"))
        return JSONResponse(error_body(422, message, "invalid_value", where or None), 422)

    @app.exception_handler(AsrboxError)
    async def ours(request: Request, exc: AsrboxError) -> JSONResponse:
        status = getattr(exc, "http_status", 400)
        return JSONResponse(error_body(status, str(exc)), status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("HTTP %s %s: internal error: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        log.debug("HTTP internal error", exc_info=exc)
        return JSONResponse(error_body(500, "internal error (logged on the box)"), 500)
