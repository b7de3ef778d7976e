"""OpenAI's transcription face: `POST /v1/audio/transcriptions`, `GET /v1/models`, and the open `GET /health`.

The upload streams to `<store>/uploads/api/<id>.<ext>` and stays there as the record's audio (it plays in the
history). Transcription goes through `App.transcribe_file`, the same batch transcriber `asrbox transcribe` and
jobs use, on the one engine (ahead of jobs, after live finals): the same file and settings give the same text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from daemon import __version__
from daemon.batch.transcribe import Outcome
from daemon.core.files import FileOptions
from daemon.http.deps import core, refuse
from daemon.http.uploads import ReceivedFile, Upload, receive
from daemon.lang import NO_SPACE_LANGUAGES, model_languages
from daemon.output.formats import FileTranscript, render
from daemon.speakers.files import SpeakerRequest

router = APIRouter(tags=["openai"])
public = APIRouter(tags=["health"])  # open, whatever the bind

log = logging.getLogger(__name__)
DISCONNECT_POLL_S = 0.5
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
UPLOADS = Path("uploads") / "api"
MB = 1024 * 1024
_LANG = re.compile(r"[a-z]{2,3}")
_EXT = re.compile(r"\.[a-z0-9]{1,8}")
_TERM_SPLIT = re.compile(r"[\n\r,;，、；]+")
MAX_TERM_CHARS = 40  # a longer piece of a prompt is prose, not a term
MAX_TERM_WORDS = 4
CONTENT_TYPES = {
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


@dataclass(frozen=True)
class Ask:
    """A transcription request's fields, checked."""

    response_format: str
    language: str | None
    hotwords: tuple[str, ...]
    itn: bool | None
    temperature: float
    granularities: tuple[str, ...]
    stream: bool
    speakers: SpeakerRequest | None = None


def split_terms(text: str) -> tuple[str, ...]:
    """Hotwords from a prompt or a `hotwords` field: lines / commas / semicolons separate terms (Chinese ones
    too); a piece longer than a few words is prose (a Whisper-style prompt sentence) and is not a term."""
    terms = []
    for piece in _TERM_SPLIT.split(text):
        term = " ".join(piece.split())
        if term and len(term) <= MAX_TERM_CHARS and len(term.split()) <= MAX_TERM_WORDS:
            terms.append(term)
    return tuple(dict.fromkeys(terms))


def _ask(
    form: Upload,
    known: tuple[str, ...] | None,
    speakers_by_default: bool = False,
    speaker_models_missing: Callable[[], str | None] = lambda: None,
) -> Ask:
    fmt = (form.field("response_format") or "json").strip()
    if fmt not in FORMATS:
        raise refuse(400, f"response_format: {fmt[:40]!r} is not one of {', '.join(FORMATS)}")
    language = (form.field("language") or "").strip().lower() or None
    if language == "auto":
        language = None
    if language is not None and not _LANG.fullmatch(language):
        raise refuse(400, f"language: {language[:40]!r} is not an ISO-639-1 code such as 'en' or 'zh'")
    if language is not None and known is not None and language not in known:
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise refuse(400, f"language: the model does not know {language!r} (it knows {shown})")
    raw_t = (form.field("temperature") or "0").strip()
    try:
        temperature = float(raw_t)
    except ValueError:
        raise refuse(400, f"temperature: expected a number between 0 and 1, got {raw_t[:40]!r}") from None
    if not 0.0 <= temperature <= 1.0:
        raise refuse(400, f"temperature: {temperature} is not between 0 and 1")
    grans = tuple(
        g.strip() for key in ("timestamp_granularities[]", "timestamp_granularities") for g in form.fields.get(key, [])
    )
    for g in grans:
        if g not in GRANULARITIES:
            raise refuse(400, f"timestamp_granularities[]: {g[:40]!r} is not 'segment' or 'word'")
    hotwords = split_terms(form.field("prompt") or "") + split_terms(form.field("hotwords") or "")
    return Ask(
        response_format=fmt,
        language=language,
        hotwords=tuple(dict.fromkeys(hotwords)),
        itn=form.flag("itn"),
        temperature=temperature,
        granularities=grans or ("segment",),
        stream=bool(form.flag("stream")),
        speakers=form.speakers_checked(speakers_by_default, speaker_models_missing),
    )


async def _receive(request: Request) -> tuple[Upload, ReceivedFile]:
    """The upload, streamed to `<store>/uploads/api/<random>.<ext>` (the record's audio from then on)."""
    app = core(request)
    s = app.settings
    folder = app.store.root / UPLOADS
    upload = await receive(
        request, folder, max_file_bytes=s.http.max_upload_mb * MB, min_free_bytes=s.store.min_free_mb * MB
    )
    files = [f for f in upload.files if f.field == "file"]
    problem = None
    if not files:
        problem = "file: missing (send the audio as the multipart part `file`)"
    elif len(upload.files) > 1:
        problem = "file: one file per request (use /api/jobs for many)"
    elif files[0].bytes == 0:
        problem = f"file: {files[0].name!r} is empty"
    if problem is not None:
        upload.discard()
        raise refuse(400, problem)
    f = files[0]
    ext = Path(f.name).suffix.lower()
    final = folder / f"{secrets.token_hex(8)}{ext if _EXT.fullmatch(ext) else '.bin'}"
    f.path.rename(final)
    f.path = final
    return upload, f


_FORM_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string", "description": "any: the box's loaded model answers"},
        "language": {"type": "string", "description": "ISO-639-1, e.g. en, zh; empty = detect"},
        "prompt": {"type": "string", "description": "its terms (split at newlines, commas) are used as hotwords"},
        "response_format": {"type": "string", "enum": list(FORMATS), "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
        "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": list(GRANULARITIES)}},
        "stream": {"type": "boolean", "default": False},
        "hotwords": {"type": "string", "description": "extension: terms, newline or comma separated"},
        "itn": {"type": "boolean", "description": "extension: inverse text normalization (numbers as digits)"},
        "speakers": {"type": "string", "description": "extension: label who speaks: 'auto' or a number (1-50)"},
        "min_speakers": {"type": "integer", "minimum": 1, "description": "extension: with speakers=auto, at least"},
        "max_speakers": {"type": "integer", "minimum": 1, "description": "extension: with speakers=auto, at most"},
    },
}


@router.post(
    "/v1/audio/transcriptions",
    summary="Transcribe an audio file (OpenAI-compatible)",
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _FORM_SCHEMA}}}},
)
async def transcriptions(request: Request) -> Response:
    """multipart/form-data: `file` (required), `model` (any: the box's loaded model answers), `language`,
    `prompt` (its terms are used as hotwords), `response_format` json|text|srt|vtt|verbose_json, `temperature`,
    `timestamp_granularities[]`, `stream`; extensions `hotwords` (newline/comma separated), `itn` (true/false),
    `speakers` (auto or N), `min_speakers`, `max_speakers`."""
    app = core(request)
    upload, received = await _receive(request)
    try:
        known = model_languages(app.engine.info.name, app.engine.info.model)
        ask = _ask(upload, known, app.settings.speakers.files, app.files.speaker_models_missing)
    except Exception:
        upload.discard()
        raise
    filename, path = received.name, received.path
    words = "word" in ask.granularities and ask.response_format == "verbose_json"
    options = FileOptions(language=ask.language, hotwords=ask.hotwords, itn=ask.itn, speakers=ask.speakers, words=words)
    outcome, record_id = await _while_connected(
        request, lambda stop: app.transcribe_file(path, options, filename, str(path.relative_to(app.store.root)), stop)
    )
    t = outcome.transcript
    if t is None:
        if not app.worker.is_alive():
            raise refuse(503, "the box is shutting down: try again in a moment")
        raise refuse(400, f"file: cannot transcribe {filename!r}: {outcome.error or 'no transcript'}")
    headers = {"X-Asrbox-Record-Id": record_id}
    if ask.stream:
        return StreamingResponse(_sse(t), media_type="text/event-stream", headers=headers)
    return _respond(t, ask, headers)


async def _while_connected(
    request: Request, start: Callable[[threading.Event], Awaitable[tuple[Outcome, str]]]
) -> tuple[Outcome, str]:
    """Run the transcription; when the client disconnects (or the server stops the request), its next window is
    not decoded: nobody would read the answer, and a client that gave up and retried must not leave the box
    decoding abandoned work ahead of live windows' turn."""
    stop = threading.Event()
    work = asyncio.ensure_future(start(stop))
    try:
        while not work.done():
            await asyncio.wait({work}, timeout=DISCONNECT_POLL_S)
            if not work.done() and await request.is_disconnected():
                log.info("HTTP: the client went away; its transcription stops after the window in hand")
                stop.set()
        return await work
    finally:
        if not work.done():
            stop.set()


def _usage(t: FileTranscript) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(t.duration_s)}


def _respond(t: FileTranscript, ask: Ask, headers: dict[str, str]) -> Response:
    fmt = ask.response_format
    if fmt == "json":
        return JSONResponse({"text": t.text, "usage": _usage(t)}, headers=headers)
    if fmt == "verbose_json":
        return JSONResponse(verbose(t, ask), headers=headers)
    doc = render(t, "txt" if fmt == "text" else fmt)
    return PlainTextResponse(doc, media_type=CONTENT_TYPES[fmt], headers=headers)


def _compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return round(len(raw) / len(zlib.compress(raw)), 3) if raw else 0.0


def verbose(t: FileTranscript, ask: Ask) -> dict[str, Any]:
    """OpenAI's verbose_json. The engine gives segment times (and word times when asked), not tokens or
    log-probabilities: `tokens` is empty, `avg_logprob` and `no_speech_prob` are 0 (see docs/api.md)."""
    segments = [
        {
            "id": i,
            "seek": round(s.start * 100),
            "start": s.start,
            "end": s.end,
            "text": s.text,
            "tokens": [],
            "temperature": ask.temperature,
            "avg_logprob": 0.0,
            "compression_ratio": _compression_ratio(s.text),
            "no_speech_prob": 0.0,
        }
        for i, s in enumerate(t.segments)
    ]
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": t.language,
        "duration": round(t.duration_s, 3),
        "text": t.text,
        "segments": segments,
        "usage": _usage(t),
    }
    if ask.speakers is not None:  # as the JSON export has them (null where nobody was labelled)
        t.add_speakers(segments, body)
    if "word" in ask.granularities:  # OpenAI's words: no leading space; [] from engines without word times
        body["words"] = [
            {"word": w.text.strip(), "start": round(w.start, 2), "end": round(w.end, 2)}
            for s in t.segments
            for w in s.words
            if w.text.strip()
        ]
    return body


async def _sse(t: FileTranscript) -> AsyncIterator[bytes]:
    """`transcript.text.delta` per segment (sent once the file is transcribed), then `transcript.text.done`."""
    sep = "" if t.language in NO_SPACE_LANGUAGES else " "
    for i, s in enumerate(t.segments):
        delta = s.text if i == 0 else sep + s.text
        yield _event({"type": "transcript.text.delta", "delta": delta, "logprobs": None})
    yield _event({"type": "transcript.text.done", "text": t.text, "logprobs": None, "usage": _usage(t)})


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


@router.get("/v1/models", summary="The model this box has loaded")
async def models(request: Request) -> dict[str, Any]:
    app = core(request)
    info = app.engine.info
    return {
        "object": "list",
        "data": [{"id": info.model, "object": "model", "created": 0, "owned_by": f"asrbox/{info.name}"}],
    }


@public.get("/health", summary="Liveness: always open")
async def health(request: Request) -> JSONResponse:
    app = core(request)
    ok = app.healthy()
    body = {"ok": ok, "status": "ok" if ok else "degraded", "version": __version__, "state": app.state}
    return JSONResponse(body, 200 if ok else 503)
