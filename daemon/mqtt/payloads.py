"""Payloads of the MQTT contract (schema 1) as plain functions returning dicts."""

from __future__ import annotations

from typing import Any

from daemon import __version__
from daemon.store.db import Record
from daemon.transcript import EngineInfo, Transcript

SCHEMA = 1


def final(
    record: Record,
    transcript: Transcript,
    raw_text: str,
    engine: EngineInfo,
    processing_s: float,
    seq: int,
    device_id: str,
    speaker: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "event_type": "transcript",
        "id": record.id,
        "seq": seq,
        "device_id": device_id,
        "session_id": record.session_id,
        "utterance_id": record.id,
        "text": transcript.text,
        "raw_text": raw_text,
        "hotwords": transcript.meta.get("hotwords", []),  # replacements made by hotword correction
        "language": transcript.language,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_s": record.duration_s,
        "engine": {**engine.as_dict(), "processing_s": round(processing_s, 3)},
        "latency_ms": None,  # set by the publisher when it hands the message to the broker
        "audio": {"path": record.audio_path},
        "speaker": speaker[0] if speaker else None,  # S1, S2... within the session (docs/speakers.md)
        "speaker_name": speaker[1] if speaker else None,  # a name given to the label, or an enrolled voice's
    }


def partial(
    session_id: str | None, utterance_id: str, rev: int, stable: str, unstable: str, started_at: str
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "session_id": session_id,
        "utterance_id": utterance_id,
        "rev": rev,
        "stable": stable,
        "unstable": unstable,
        "text": stable + unstable,
        "started_at": started_at,
    }


def state(state: str, session_id: str | None, reason: str | None, since: str, backlog: int) -> dict[str, Any]:
    return {"state": state, "session_id": session_id, "reason": reason, "since": since, "backlog": backlog}


def error(code: str, message: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "context": context or {}}


def ping(state: str, uptime_s: float) -> dict[str, Any]:
    return {"version": __version__, "state": state, "uptime_s": round(uptime_s, 1)}
