"""Speakers over HTTP (docs/speakers.md): names for a session's or a record's labels, the enrolled voices
(enrolled from an upload, as `asrbox speakers enroll` does; listed; deleted), live utterances by speaker. Quick
SQLite statements on the core's loop; decoding and the embedding of a voice run on a worker thread; errors are
the shared one-line JSON."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from daemon.errors import AsrboxError, ConfigError, ModelError
from daemon.http.deps import core, refuse
from daemon.http.uploads import MB, ReceivedFile, Upload, receive
from daemon.speakers.commands import shown, speaker_label, speaker_name, voice_embedding, voice_name
from daemon.speakers.files import SpeakerRequest
from daemon.store import speakers as db
from daemon.store.db import Store

if TYPE_CHECKING:
    from daemon.core.app import App
    from daemon.store.speakers import Vector, Voice

router = APIRouter(tags=["speakers"])
log = logging.getLogger(__name__)
VOICE_UPLOADS = Path("uploads") / "voices"  # a voice's audio is only read, never kept
VOICE_MAX_MB = 100


class SpeakerName(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100, description="the name; null or empty removes it")


def _label(label: str) -> str:
    try:
        return speaker_label(label)
    except ConfigError as exc:
        raise refuse(422, str(exc)) from None


def _name(raw: str | None) -> str | None:
    try:
        return speaker_name(raw)
    except ConfigError as exc:
        raise refuse(422, f"name: {exc}") from None


def _labels_of_record(segments: list[Any]) -> list[str]:
    found = {str(s["speaker"]) for s in segments if isinstance(s, dict) and s.get("speaker")}
    return sorted(found, key=lambda x: (len(x), x))


@router.get("/api/records/{record_id}/speakers")
async def record_speakers(request: Request, record_id: str) -> dict[str, Any]:
    store = core(request).store
    rec = store.get(record_id)
    if rec is None:
        raise refuse(404, f"no record {shown(record_id)}")
    names = db.names(store, "record", record_id)
    return {"ok": True, "speakers": [{"label": x, "name": names.get(x)} for x in _labels_of_record(rec.segments)]}


def _rename(store: Store, scope: str, owner: str, label: str, body: SpeakerName) -> dict[str, Any]:
    label, name = _label(label), _name(body.name)
    db.rename(store, scope, owner, label, name)
    return {"ok": True, "label": label, "name": name}


@router.put("/api/records/{record_id}/speakers/{label}")
async def name_record_speaker(request: Request, record_id: str, label: str, body: SpeakerName) -> dict[str, Any]:
    store = core(request).store
    if store.get(record_id) is None:
        raise refuse(404, f"no record {shown(record_id)}")
    return _rename(store, "record", record_id, label, body)


@router.put("/api/sessions/{session_id}/speakers/{label}")
async def name_session_speaker(request: Request, session_id: str, label: str, body: SpeakerName) -> dict[str, Any]:
    store = core(request).store
    if store.session(session_id) is None:
        raise refuse(404, f"no session {shown(session_id)}")
    return _rename(store, "session", session_id, label, body)


@router.get("/api/sessions/{session_id}/speakers")
async def session_speakers(request: Request, session_id: str) -> dict[str, Any]:
    store = core(request).store
    if store.session(session_id) is None:
        raise refuse(404, f"no session {shown(session_id)}")
    labels = sorted({lab for lab, _ in db.session_embeddings(store, session_id)}, key=lambda x: (len(x), x))
    names = db.names(store, "session", session_id)
    return {"ok": True, "speakers": [{"label": x, "name": names.get(x)} for x in labels]}


@router.get("/api/speakers/utterances")
async def utterances_of(
    request: Request, speaker: str = Query(min_length=1, max_length=100), session_id: str | None = None
) -> dict[str, Any]:
    """Live utterances said by a label or a name given in their session (search by speaker)."""
    return {"ok": True, "record_ids": db.records_of_speaker(core(request).store, speaker, session_id)}


@router.get("/api/speakers/voices")
async def list_voices(request: Request) -> dict[str, Any]:
    return {"ok": True, "voices": [_voice(v) for v in db.voices(core(request).store)]}


def _voice(v: Voice) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "seconds": v.seconds, "created_at": v.created_at}


@router.delete("/api/speakers/voices/{name:path}")  # a name may hold "/"
async def delete_voice(request: Request, name: str) -> dict[str, Any]:
    app = core(request)
    if not db.delete_voice(app.store, name):
        raise refuse(404, f"no enrolled voice {shown(name)}")
    app.files.reload_voices()
    return {"ok": True}


def _voice_form(upload: Upload) -> tuple[str, ReceivedFile]:
    files = [f for f in upload.files if f.field == "file"]
    if not files:
        raise refuse(400, "file: missing (send 3-30 s of one person's speech as the multipart part `file`)")
    if len(upload.files) > 1:
        raise refuse(400, "file: one file per voice")
    if files[0].bytes == 0:
        raise refuse(400, f"file: {files[0].name!r} is empty")
    try:
        return voice_name(upload.field("name") or ""), files[0]
    except ConfigError as exc:
        raise refuse(400, f"name: {exc}") from None


def _embed(app: App, f: ReceivedFile) -> tuple[Vector, float]:
    """A worker thread's: the voice's embedding with the file labeller's CAM++ (loaded once; a damaged model
    file is a ModelError naming `asrbox models verify`)."""
    embed = app.files.labeller(SpeakerRequest()).diarizer.embedder.embed
    return voice_embedding(app.settings, f.path, f.name, embed)


@router.post("/api/speakers/voices", status_code=201)
async def enroll_voice(request: Request) -> JSONResponse:
    """Multipart: `name`, `file` (3-30 s of one person's speech, any audio the box decodes). Enrolls it as
    `asrbox speakers enroll` does; a voice of the same name is replaced (`replaced: true`). The audio is not
    kept: only its embedding."""
    app = core(request)
    s = app.settings
    upload = await receive(
        request,
        app.store.root / VOICE_UPLOADS,
        max_file_bytes=min(s.http.max_upload_mb, VOICE_MAX_MB) * MB,
        min_free_bytes=s.store.min_free_mb * MB,
    )
    try:
        name, f = _voice_form(upload)
        missing = app.files.speaker_models_missing()
        if missing is not None:
            raise refuse(409, missing)
        try:
            vector, seconds = await asyncio.to_thread(_embed, app, f)
        except ModelError as exc:
            raise refuse(409 if "asrbox models" in str(exc) else 422, str(exc)) from None  # the box's, or the clip's
        except AsrboxError as exc:
            raise refuse(422, str(exc)) from None
    finally:
        upload.discard()
    replaced = any(v.name == name for v in app.files.voices)
    vid = db.add_voice(app.store, name, vector, seconds)
    app.files.reload_voices()
    log.info("voice %r enrolled over HTTP from %.1f s of audio", name, seconds)
    voice = next(v for v in app.files.voices if v.id == vid)
    return JSONResponse({"ok": True, "voice": _voice(voice), "replaced": replaced}, 201)
