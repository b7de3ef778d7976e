"""A cap on request bodies that are not uploads (JSON bodies: speaker names, record edits, hotwords, login,
exports...). FastAPI reads such a body whole and parses it: a 1 GB JSON body made the daemon hold about 3.7 GB
before the model refused it. Uploads stream to disk with their own limits (daemon.http.uploads): the routes
that take them say so in the request's scope (`UPLOAD`) before reading; the cap holds for every other route,
whatever the body's declared type (a JSON route sent 1 GB labelled multipart is refused too).

Over the cap the request is a 413 in the shared error shape: at once when Content-Length says so, else as soon
as the bytes read pass it (a chunked body)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 16 * 1024 * 1024  # a record edit of a long file's segments is a few MB
UPLOAD = "asrbox.upload"  # set in the request's scope by daemon.http.uploads.receive: this body streams to disk


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes and not _multipart(scope):
            await _refuse(self.max_bytes, scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes and not scope.get(UPLOAD):  # a route that streams uploads lifts the cap
                raise HTTPException(413, _message(self.max_bytes))
            return message

        await self.app(scope, counted, send)


def _header(scope: Scope, name: bytes) -> bytes:
    return next((v for k, v in scope.get("headers", ()) if k.lower() == name), b"")


def _multipart(scope: Scope) -> bool:
    return _header(scope, b"content-type").lower().startswith(b"multipart/")


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length").strip()
    return int(value) if value.isdigit() else None


async def _refuse(max_bytes: int, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.responses import JSONResponse

    from daemon.http.app import error_body  # app.py installs this middleware

    await JSONResponse(error_body(413, _message(max_bytes)), 413)(scope, receive, send)


def _message(max_bytes: int) -> str:
    return f"request body larger than {max_bytes // (1024 * 1024)} MB (files go as multipart/form-data)"
