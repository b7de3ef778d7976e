"""Records and sessions over HTTP: the history (filters, full-text search, keyset paging), edits with the
recognizer's text kept, deletion, the audio of a record with HTTP Range, exports; live sessions start/stop.

Every handler runs on the core's loop: store calls are quick SQLite statements on the loop's connection
(daemon.store.records); rendering an export runs in a thread over data read on the loop. Errors are one-line
JSON (`HistoryError` carries its status; the app turns it into the shared error shape).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from daemon.http.deps import core
from daemon.output.exports import EXPORT_FORMATS, MEDIA_TYPES, render_export
from daemon.store import records as history
from daemon.store.db import Store
from daemon.store.records import MAX_LIMIT, HistoryError, RecordFilter, parse_time, valid_text

log = logging.getLogger(__name__)

router = APIRouter(tags=["records"])

ExportFormat = Literal["txt", "srt", "vtt", "csv", "json", "docx"]
assert set(EXPORT_FORMATS) == set(ExportFormat.__args__)  # type: ignore[attr-defined]
MAX_EXPORT_IDS = 10_000
CHUNK = 256 * 1024
_LANGUAGE = re.compile(r"^(auto|[a-z]{2,3}([-_][A-Za-z0-9]{2,8})?)$")
_BYTE_POS = re.compile(r"[0-9]{1,1000}")  # ASCII digits (str.isdigit takes "²"), under int()'s 4300-digit cap
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, 1..{MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]


class RecordEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    segments: list[Any] | None = None


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=MAX_EXPORT_IDS)
    format: ExportFormat = "txt"
    title: str | None = Field(None, max_length=200)

    @field_validator("ids")
    @classmethod
    def _unicode(cls, ids: list[str]) -> list[str]:
        if not all(valid_text(i) for i in ids):
            raise ValueError("not valid Unicode text (a lone surrogate)")
        return ids


class SessionStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    language: str | None = Field(None, max_length=20)


# ---------------------------------------------------------------------------------------------- records
@router.get("/api/records")
async def list_records(
    request: Request,
    q: Annotated[str | None, Query(max_length=500, description="full-text search (Chinese too)")] = None,
    since: Annotated[str | None, Query(description="date or ISO time (box's local time unless zoned)")] = None,
    until: Annotated[str | None, Query(description="date (inclusive) or ISO time")] = None,
    source: Literal["live", "file"] | None = None,
    session: Annotated[str | None, Query(max_length=100)] = None,
    language: Annotated[str | None, Query(max_length=20)] = None,
    speaker: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    q = _CONTROL.sub(" ", q) if q else q  # a NUL would end SQLite's reading of the search
    f = RecordFilter(
        q=q if q and q.strip() else None,
        since=parse_time(since, "since"),
        until=parse_time(until, "until", end_of_day=True),
        kind=source,
        session_id=session or None,
        language=language or None,
        speaker=speaker or None,
    )
    if f.since and f.until and f.since > f.until:
        raise HistoryError("since is after until")
    items, nxt = history.page(core(request).store, f, limit, cursor)
    return {"ok": True, "items": items, "next_cursor": nxt}


@router.post("/api/records/export")
async def export_records(request: Request, body: ExportRequest) -> Response:
    store = core(request).store
    rows = history.rows(store, list(dict.fromkeys(body.ids)))
    records = await asyncio.to_thread(lambda: [history.view(r) for r in rows])  # up to 10 000: JSON off the loop
    title = body.title or f"asrbox: {len(records)} record{'s' * (len(records) != 1)}"
    return await _document(store, records, body.format, title, None, "asrbox-records")


@router.get("/api/records/{record_id}")
async def get_record(request: Request, record_id: str) -> dict[str, Any]:
    return {"ok": True, "record": history.get(core(request).store, record_id)}


@router.patch("/api/records/{record_id}")
async def edit_record(request: Request, record_id: str, body: RecordEdit) -> dict[str, Any]:
    segments = history.check_segments(body.segments) if body.segments is not None else None
    record = history.edit(core(request).store, record_id, body.text, segments)
    return {"ok": True, "record": record}


@router.get("/api/records/{record_id}/edits")
async def record_edits(request: Request, record_id: str) -> dict[str, Any]:
    return {"ok": True, "items": history.edits(core(request).store, record_id)}


@router.post("/api/records/{record_id}/revert")
async def revert_record(request: Request, record_id: str) -> dict[str, Any]:
    return {"ok": True, "record": history.revert(core(request).store, record_id)}


@router.delete("/api/records/{record_id}")
async def delete_record(request: Request, record_id: str) -> dict[str, Any]:
    return {"ok": True, **history.delete(core(request).store, record_id)}


@router.api_route("/api/records/{record_id}/audio", methods=["GET", "HEAD"])
async def record_audio(request: Request, record_id: str) -> Response:
    store = core(request).store
    row = history.record_row(store, record_id)
    path = history.audio_file(store, row)
    if path is None:
        raise HistoryError(f"record {record_id} has no audio file", 404)
    try:
        size = path.stat().st_size
        span = byte_range(request.headers.get("range"), size)
        fh = path.open("rb")
    except OSError as exc:
        raise HistoryError(f"the audio of record {record_id} cannot be read: {exc.strerror or exc}", 404) from None
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {"Accept-Ranges": "bytes"}
    start, end = span if span is not None else (0, size)
    headers["Content-Length"] = str(end - start)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        fh.close()
        return Response(status_code=206 if span else 200, headers=headers, media_type=media)
    return StreamingResponse(_chunks(fh, start, end), 206 if span else 200, headers, media_type=media)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A `Range: bytes=...` header -> (start, end exclusive); None = the whole file (no header, another unit, or
    several ranges, which RFC 9110 lets a server answer in full). A malformed or unsatisfiable range: 416."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    first, dash, last = (x.strip() for x in spec.partition("-"))
    span: tuple[int, int] | None = None
    if dash and _BYTE_POS.fullmatch(first) and (_BYTE_POS.fullmatch(last) or not last):
        start = int(first)
        end = min(int(last) + 1, size) if last else size
        span = (start, end) if start < size and end > start else None
    elif dash and not first and _BYTE_POS.fullmatch(last) and int(last) > 0 and size > 0:
        span = (max(size - int(last), 0), size)
    if span is None:
        raise HTTPException(
            416,
            f"range {header[:60]!r} is not satisfiable for {size} bytes (e.g. bytes=0-1023, bytes=1024-, bytes=-1024)",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return span


def _chunks(fh: Any, start: int, end: int) -> Iterator[bytes]:
    """The file's bytes [start, end) in chunks (iterated in a worker thread by the response)."""
    with fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            data = fh.read(min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data


# ---------------------------------------------------------------------------------------------- sessions
@router.get("/api/sessions")
async def list_sessions(request: Request, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    app = core(request)
    items, nxt = history.sessions_page(app.store, limit, cursor)
    return {"ok": True, "items": items, "next_cursor": nxt, "current": app.session_id}


@router.post("/api/sessions")
async def start_session(request: Request, body: SessionStart | None = None) -> dict[str, Any]:
    body = body or SessionStart()
    if body.language is not None and not _LANGUAGE.match(body.language):
        raise HistoryError(f"language: not a language code: {body.language!r} (e.g. zh, en, auto)")
    app = core(request)
    running = app.session_id
    sid = await app.start_session(body.name or None, body.language or None)
    return {"ok": True, "started": running is None, "session": history.session_row(app.store, sid)}


@router.post("/api/sessions/current/stop")
async def stop_session(request: Request) -> dict[str, Any]:
    info = await core(request).stop_session()
    return {"ok": True, "session": info or None}


def _session_id(request: Request, session_id: str) -> str:
    if session_id != "current":
        return session_id
    current = core(request).session_id
    if current is None:
        raise HistoryError("no session is running", 404)
    return current


@router.get("/api/sessions/{session_id}")
async def get_session(request: Request, session_id: str, limit: Limit = MAX_LIMIT, cursor: Cursor = None) -> Any:
    """The session and its records, oldest first (paged like /api/records)."""
    store = core(request).store
    info = history.session_row(store, _session_id(request, session_id))
    items, nxt = history.page(store, RecordFilter(session_id=info["id"]), limit, cursor, newest_first=False)
    return {"ok": True, "session": info, "records": items, "next_cursor": nxt}


@router.get("/api/sessions/{session_id}/export")
async def export_session(request: Request, session_id: str, format: ExportFormat = "txt") -> Response:
    store = core(request).store
    info = history.session_row(store, _session_id(request, session_id))
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:  # page by page, letting the loop breathe between pages
        items, cursor = history.page(store, RecordFilter(session_id=info["id"]), MAX_LIMIT, cursor, False)
        records += [r for r in items if r["status"] == "done"]
        if cursor is None:
            break
        await asyncio.sleep(0)
    title = info["name"] or f"asrbox session {info['started_at'][:16].replace('T', ' ')} UTC"
    return await _document(store, records, format, title, info, f"asrbox-session-{info['id'][:8]}")


async def _document(
    store: Store, records: list[dict[str, Any]], fmt: str, title: str, session: dict[str, Any] | None, stem: str
) -> Response:
    records = history.with_speaker_names(store, records)
    data = await asyncio.to_thread(render_export, records, fmt, title, session)
    name = f"{stem}-{datetime.now(UTC):%Y%m%d-%H%M}.{fmt}"
    disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"
    return Response(data, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": disposition})
