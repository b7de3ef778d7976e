"""The live box over HTTP: state, diagnostics, status, listening on/off, the box's hotwords, and `GET /api/events`
(Server-Sent Events from the core's bus: state, partial, final, job, level, session).

Changes (listening, hotwords) run through the core's command desk, in order with MQTT commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from daemon import __version__
from daemon.errors import StoreError
from daemon.http.deps import core, refuse
from daemon.http.server import is_loopback
from daemon.settings import masked_dump
from daemon.store.hotwords import save_terms
from daemon.text.hotwords import clean_text

if TYPE_CHECKING:
    from daemon.core.app import App

router = APIRouter(tags=["live"])

T = TypeVar("T")
EVENT_TYPES = frozenset({"state", "partial", "final", "job", "level", "session"})
KEEPALIVE_S = 15.0
ACTION_TIMEOUT_S = 30.0
MAX_TERMS = 2000
MAX_TERM_CHARS = 100


async def in_order(app: App, action: Callable[[], Awaitable[T]]) -> T:
    """Run `action` on the command desk (after the commands already queued) and return its result."""
    if app.desk.queue.full():
        raise refuse(503, "busy: too many commands waiting, try again")
    done: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    async def run() -> None:
        try:
            result = await action()
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if not done.done():
            done.set_result(result)

    app.desk.intake(run)
    try:
        return await asyncio.wait_for(done, ACTION_TIMEOUT_S)
    except TimeoutError:
        raise refuse(503, "the box did not answer in time (commands are running late)") from None


@router.get("/api/state", summary="The state, as MQTT `state` carries it")
async def state(request: Request) -> dict[str, Any]:
    return {"ok": True, **core(request).state_view()}


@router.get("/api/diagnostics", summary="The figures MQTT `diagnostics` carries")
async def diagnostics(request: Request) -> dict[str, Any]:
    return {"ok": True, **core(request).supervisor.diagnostics()}


@router.get("/api/status", summary="Engine, version, disk, MQTT, backlog, settings in force (secrets masked)")
async def status(request: Request) -> dict[str, Any]:
    app = core(request)
    s = app.settings
    return {
        "ok": True,
        "version": __version__,
        "engine": app.engine.info.as_dict(),
        "state": app.state_view(),
        "listening": app.listening,
        "mqtt": {"connected": app.outbox.connected, "host": s.mqtt.host, "port": s.mqtt.port},
        "backlog": app.utterances.backlog,
        "outbox": app.outbox.backlog(),
        "disk": {
            "store": str(s.store.path),
            "free_mb": app.retention.free_mb(),
            "audio_bytes": app.store.archived_bytes(),
            "retention_days": s.store.retention_days,
            "max_audio_gb": s.store.max_audio_gb,
            "min_free_mb": s.store.min_free_mb,
            "archiving_audio": app.utterances.archive_audio,
        },
        "http": {"bind": s.http.bind, "port": s.http.port, "auth": "open" if is_loopback(s.http.bind) else "required"},
        "settings": masked_dump(s),
    }


class Listening(BaseModel):
    on: bool


@router.post("/api/listening", summary="Listening on (starts a session if none) or off (ends it)")
async def listening(body: Listening, request: Request) -> dict[str, Any]:
    app = core(request)

    async def switch() -> str | None:
        if body.on:
            return await app.start_session(None, None)
        return (await app.stop_session()).get("id")

    session_id = await in_order(app, switch)
    return {"ok": True, "listening": app.listening, "session_id": session_id, "state": app.state_view()}


def _hotwords_view(app: App) -> dict[str, Any]:
    return {
        "ok": True,
        "terms": list(app.box_hotwords),
        "layers": {
            "config": list(app.settings.text.terms()),
            "box": list(app.box_hotwords),
            "session": list(app.hotwords),
        },
    }


@router.get("/api/hotwords", summary="The box's hotword list (in force), and where terms come from")
async def get_hotwords(request: Request) -> dict[str, Any]:
    return _hotwords_view(core(request))


class Hotwords(BaseModel):
    terms: list[str] = Field(..., max_length=MAX_TERMS)


def _clean(terms: list[str]) -> tuple[str, ...]:
    kept: dict[str, None] = {}
    for i, raw in enumerate(terms):
        try:
            term = clean_text(raw)
        except ValueError as exc:
            raise refuse(400, f"terms[{i}]: {exc}") from None
        if len(term) > MAX_TERM_CHARS:
            raise refuse(400, f"terms[{i}]: longer than {MAX_TERM_CHARS} characters")
        if term:
            kept[term] = None
    return tuple(kept)


@router.put("/api/hotwords", summary="Replace the box's hotword list (in force at once, kept over restarts)")
async def put_hotwords(body: Hotwords, request: Request) -> dict[str, Any]:
    app = core(request)
    terms = _clean(body.terms)

    async def replace() -> None:
        await asyncio.to_thread(save_terms, app.store.root, terms)  # persisted before it is in force
        app.box_hotwords = terms
        app.refresh_context()

    try:
        await in_order(app, replace)
    except StoreError as exc:
        raise refuse(507, str(exc)) from None
    return _hotwords_view(app)


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


@router.get("/api/events", summary="Server-Sent Events: state, partial, final, job, level, session")
async def events(
    request: Request, types: str | None = Query(None, description="comma-separated subset of the event types")
) -> StreamingResponse:
    app = core(request)
    kinds = EVENT_TYPES
    if types:
        kinds = frozenset(t.strip() for t in types.split(",") if t.strip())
        unknown = sorted(kinds - EVENT_TYPES)
        if unknown:
            raise refuse(
                400, f"types: unknown event type(s) {', '.join(unknown)} (known: {', '.join(sorted(EVENT_TYPES))})"
            )
    return StreamingResponse(_stream(app, kinds), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _stream(app: App, kinds: frozenset[str]) -> AsyncIterator[bytes]:
    sub = app.bus.subscribe(kinds)
    try:
        yield b"retry: 2000\n\n"
        if "state" in kinds:
            yield _sse("state", {"type": "state", **app.state_view()})
        idle = 0.0
        while not _closing(app):
            try:
                event = await asyncio.wait_for(sub.queue.get(), 1.0)
            except TimeoutError:
                idle += 1.0
                if idle >= KEEPALIVE_S:
                    idle = 0.0
                    yield b": keepalive\n\n"
                continue
            idle = 0.0
            yield _sse(str(event.get("type")), event)
    finally:
        sub.close()


def _closing(app: App) -> bool:
    """The server is stopping: end the stream so that shutdown does not wait for it."""
    return app.http is not None and bool(app.http.server.should_exit)
