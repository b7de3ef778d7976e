"""Speakers over HTTP (docs/speakers.md): names for a session's or a record's labels, the enrolled voices
(listed and deleted here; enrolled with `asrbox speakers enroll`), live utterances by speaker. Quick SQLite
statements on the core's loop; errors are the shared one-line JSON."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from daemon.http.deps import core, refuse
from daemon.store import speakers as db
from daemon.store.db import Store

router = APIRouter(tags=["speakers"])
_LABEL = re.compile(r"^S[1-9][0-9]{0,2}$")


class SpeakerName(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100, description="the name; null or empty removes it")


def _label(label: str) -> str:
    if not _LABEL.match(label):
        raise refuse(422, f"not a speaker label: {label[:20]!r} (S1, S2...)")
    return label


def _labels_of_record(segments: list[Any]) -> list[str]:
    found = {str(s["speaker"]) for s in segments if isinstance(s, dict) and s.get("speaker")}
    return sorted(found, key=lambda x: (len(x), x))


@router.get("/api/records/{record_id}/speakers")
async def record_speakers(request: Request, record_id: str) -> dict[str, Any]:
    store = core(request).store
    rec = store.get(record_id)
    if rec is None:
        raise refuse(404, f"no record {record_id}")
    names = db.names(store, "record", record_id)
    return {"ok": True, "speakers": [{"label": x, "name": names.get(x)} for x in _labels_of_record(rec.segments)]}


def _rename(store: Store, scope: str, owner: str, label: str, body: SpeakerName) -> dict[str, Any]:
    name = (body.name or "").strip() or None
    db.rename(store, scope, owner, _label(label), name)
    return {"ok": True, "label": label, "name": name}


@router.put("/api/records/{record_id}/speakers/{label}")
async def name_record_speaker(request: Request, record_id: str, label: str, body: SpeakerName) -> dict[str, Any]:
    store = core(request).store
    if store.get(record_id) is None:
        raise refuse(404, f"no record {record_id}")
    return _rename(store, "record", record_id, label, body)


@router.put("/api/sessions/{session_id}/speakers/{label}")
async def name_session_speaker(request: Request, session_id: str, label: str, body: SpeakerName) -> dict[str, Any]:
    store = core(request).store
    if store.session(session_id) is None:
        raise refuse(404, f"no session {session_id}")
    return _rename(store, "session", session_id, label, body)


@router.get("/api/sessions/{session_id}/speakers")
async def session_speakers(request: Request, session_id: str) -> dict[str, Any]:
    store = core(request).store
    if store.session(session_id) is None:
        raise refuse(404, f"no session {session_id}")
    labels = sorted({lab for lab, _ in db.session_embeddings(store, session_id)}, key=lambda x: (len(x), x))
    names = db.names(store, "session", session_id)
    return {"ok": True, "speakers": [{"label": x, "name": names.get(x)} for x in labels]}


@router.get("/api/speakers/utterances")
async def utterances_of(request: Request, speaker: str, session_id: str | None = None) -> dict[str, Any]:
    """Live utterances said by a label or a name given in their session (search by speaker)."""
    return {"ok": True, "record_ids": db.records_of_speaker(core(request).store, speaker, session_id)}


@router.get("/api/speakers/voices")
async def list_voices(request: Request) -> dict[str, Any]:
    voices = db.voices(core(request).store)
    return {
        "ok": True,
        "voices": [{"id": v.id, "name": v.name, "seconds": v.seconds, "created_at": v.created_at} for v in voices],
    }


@router.delete("/api/speakers/voices/{name}")
async def delete_voice(request: Request, name: str) -> dict[str, Any]:
    app = core(request)
    if not db.delete_voice(app.store, name):
        raise refuse(404, f"no enrolled voice {name!r}")
    app.utterances.speakers.forget_voices()
    return {"ok": True}
