"""The FastAPI application: routers, one JSON error shape, no traceback ever reaches a client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon import __version__
from daemon.errors import AsrboxError
from daemon.http import auth, console, console_api, docs, jobs, live, metrics, openai_api, records, speakers
from daemon.http.limits import BodyLimit

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
    app.add_middleware(_Contained)
    app.add_middleware(BodyLimit)  # JSON bodies over 16 MB: 413 before they are read whole
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


class _Contained:
    """An unexpected exception: a 500 in the error shape and one ERROR line (the traceback at DEBUG).

    Not an `exception_handler(Exception)`: Starlette's ServerErrorMiddleware calls that one and then re-raises,
    so uvicorn logged every such request's traceback at ERROR. This middleware sits inside it and keeps the
    exception. If the answer had already started (a stream that failed), the connection is just closed. A request
    uvicorn cancels at shutdown (still transcribing when its grace period ends) gets a 503 if it can, and one
    WARNING line, instead of uvicorn's traceback of the CancelledError."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            log.warning("HTTP %s %s: cut off by the shutdown", scope.get("method"), scope.get("path"))
            if not started:
                with contextlib.suppress(Exception):
                    await JSONResponse(error_body(503, "the box is shutting down: try again in a moment"), 503)(
                        scope, receive, send
                    )
        except Exception as exc:
            method, path = scope.get("method"), scope.get("path")
            log.error("HTTP %s %s: internal error: %s: %s", method, path, type(exc).__name__, exc)
            log.debug("HTTP internal error", exc_info=exc)
            if not started:
                await JSONResponse(error_body(500, "internal error (logged on the box)"), 500)(scope, receive, send)
