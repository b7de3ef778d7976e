"""Jobs over HTTP: batches of files uploaded (streamed to disk), transcribed in the background, resumed after a
restart; results per file (txt/json/srt/vtt/csv), as a zip, or as one CSV for the whole batch.

The handlers run on the core's loop and only translate: uploads go through `daemon.http.uploads`, the jobs'
state lives in the store (`daemon.store.jobs`), the work is the runner's (`daemon.core.jobs`).
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from daemon.audio.decode import AUDIO_EXTENSIONS
from daemon.batch.transcribe import transcript_from_record
from daemon.core.files import FileOptions
from daemon.http.deps import core, refuse
from daemon.http.uploads import MB, ReceivedFile, Upload, receive
from daemon.lang import model_languages
from daemon.output.formats import FORMATS, FileTranscript, batch_csv, render
from daemon.store import speakers as speaker_db
from daemon.store.jobs import NewFile

if TYPE_CHECKING:
    from daemon.core.app import App

router = APIRouter(tags=["jobs"])

MEDIA = {
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}
_LANGUAGE = re.compile(r"^(auto|[a-z]{2,3}(-[A-Za-z]{2,4})?)$")


# ---------------------------------------------------------------------------- helpers
def _options(upload: Upload, app: App) -> dict[str, Any]:
    """The job's options from the form (stored with the job); 400 for a bad value, 409 when speakers are asked
    for and the speaker models are not installed."""
    known = model_languages(app.engine.info.name, app.engine.info.model)
    language = (upload.field("language") or "").strip() or None
    if language is not None and not _LANGUAGE.match(language):
        raise refuse(400, f"language: not a language code: {language[:40]!r}")
    if language not in (None, "auto") and known is not None and language not in known:
        raise refuse(400, f"language: the model does not know {language!r}")
    raw = upload.field("hotwords") or ""
    terms = [t.strip() for t in re.split(r"[\n,，]", raw) if t.strip()]
    if any(len(t) > 100 for t in terms) or len(terms) > 1000:
        raise refuse(400, "hotwords: at most 1000 terms of at most 100 characters")
    speakers = upload.speakers_checked(app.settings.speakers.files, app.files.speaker_models_missing)
    options = FileOptions(language=language, hotwords=tuple(terms), itn=upload.flag("itn"), speakers=speakers)
    return options.as_dict()


def _probe(path: Path) -> float | None:
    """A worker thread's: the file's duration in seconds if it holds audio; ValueError if it does not."""
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ValueError("contains no audio stream")
            if container.duration:
                return float(container.duration) / 1_000_000
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            return None
    except av.error.FFmpegError:
        raise ValueError("not an audio or video file") from None


async def _check(upload: Upload) -> list[tuple[ReceivedFile, float | None]]:
    """The received `file` parts with their durations; refuses the whole request (and removes what it received)
    if there is none, or a file is empty or holds no audio."""
    files = [f for f in upload.files if f.field == "file"]
    try:
        if not files:
            raise refuse(400, "no file: send one or more `file` parts")
        checked = []
        for f in files:
            if f.bytes == 0:
                raise refuse(400, f"{f.name}: empty file (0 bytes)")
            try:
                checked.append((f, await asyncio.to_thread(_probe, f.path)))
            except ValueError as exc:
                raise refuse(415, f"{f.name}: {exc}") from None
    except BaseException:
        upload.discard()
        raise
    for f in upload.files:
        if f.field != "file":
            f.path.unlink(missing_ok=True)
    return checked


def _place(app: App, job_id: str, first: int, checked: list[tuple[ReceivedFile, float | None]]) -> list[NewFile]:
    """Move checked files to `uploads/<job>/<idx>.<ext>` (called with no await before their rows are written,
    so two uploads to one job never get the same index)."""
    folder = app.jobs.uploads(job_id)
    out = []
    for i, (f, duration) in enumerate(checked):
        ext = Path(f.name).suffix.lower()
        target = folder / f"{first + i}{ext if ext in AUDIO_EXTENSIONS else '.bin'}"
        f.path.rename(target)
        out.append(NewFile(f.name, str(target.relative_to(app.store.root)), f.bytes, duration))
    return out


async def _receive(request: Request, app: App, job_id: str) -> Upload:
    s = app.settings
    return await receive(
        request,
        app.jobs.uploads(job_id),
        max_file_bytes=s.http.max_upload_mb * MB,
        min_free_bytes=s.store.min_free_mb * MB,
    )


def _job_or_404(app: App, job_id: str) -> dict[str, Any]:
    job = app.jobs.db.get(job_id)
    if job is None:
        raise refuse(404, f"no job {job_id!r}")
    return job


def _transcript(app: App, f: dict[str, Any]) -> FileTranscript | None:
    rec = app.store.get(f["record_id"]) if f.get("record_id") else None
    if rec is None or rec.status != "done":
        return None
    return transcript_from_record(rec, f["name"], speaker_db.names(app.store, "record", rec.id))


def _download(body: str | bytes, media: str, filename: str) -> Response:
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    disposition = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
    return Response(body, media_type=media, headers={"Content-Disposition": disposition})


# ---------------------------------------------------------------------------- creating
@router.post("/api/jobs", status_code=201)
async def create_job(request: Request) -> JSONResponse:
    """Multipart: `file` parts (one or many), optional `name`, `language`, `hotwords`, `itn`, `hold`, `speakers`
    (auto or N), `min_speakers`, `max_speakers`."""
    app = core(request)
    job_id = uuid.uuid4().hex[:16]
    try:
        upload = await _receive(request, app, job_id)
        try:
            options, hold = _options(upload, app), bool(upload.flag("hold"))
            name = (upload.field("name") or "").strip()[:200] or None
        except BaseException:
            upload.discard()
            raise
        checked = await _check(upload)
    except BaseException:
        shutil.rmtree(app.jobs.uploads(job_id), ignore_errors=True)
        raise
    app.jobs.db.create(job_id, name, options, _place(app, job_id, 0, checked), held=hold)
    app.jobs.emit(job_id, None)
    app.jobs.kick()
    return JSONResponse({"ok": True, "job": _job_or_404(app, job_id)}, 201)


@router.post("/api/jobs/{job_id}/files")
async def add_files(job_id: str, request: Request) -> dict[str, Any]:
    app = core(request)
    status = app.jobs.db.status(job_id)
    if status is None:
        raise refuse(404, f"no job {job_id!r}")
    if status == "cancelled":
        raise refuse(409, "the job is cancelled: start a new one")
    upload = await _receive(request, app, job_id)
    checked = await _check(upload)
    if app.jobs.db.status(job_id) in (None, "cancelled"):  # deleted or cancelled while the upload ran
        upload.discard()
        raise refuse(409, "the job was cancelled or deleted during the upload")
    app.jobs.db.add_files(job_id, _place(app, job_id, app.jobs.db.next_index(job_id), checked))
    app.jobs.emit(job_id, None)
    app.jobs.kick()
    return {"ok": True, "job": _job_or_404(app, job_id)}


@router.post("/api/jobs/{job_id}/start")
async def start_job(job_id: str, request: Request) -> dict[str, Any]:
    app = core(request)
    job = _job_or_404(app, job_id)
    if job["files_total"] == 0:
        raise refuse(409, "the job has no files")
    if not app.jobs.db.start(job_id):
        raise refuse(409, f"the job is {job['status']}, not held")
    app.jobs.emit(job_id, None)
    app.jobs.kick()
    return {"ok": True, "job": _job_or_404(app, job_id)}


# ---------------------------------------------------------------------------- reading, cancelling, deleting
@router.get("/api/jobs")
async def list_jobs(
    request: Request, limit: int = Query(50, ge=1, le=500), cursor: str | None = None
) -> dict[str, Any]:
    items, nxt = core(request).jobs.db.page(limit, cursor)
    return {"ok": True, "items": items, "next_cursor": nxt}


@router.get("/api/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    return _job_or_404(core(request), job_id)


@router.post("/api/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    app = core(request)
    job = _job_or_404(app, job_id)
    if not app.jobs.cancel(job_id):
        raise refuse(409, f"the job is already {job['status']}: nothing to cancel")
    return {"ok": True, "job": _job_or_404(app, job_id)}


@router.delete("/api/jobs/{job_id}")
async def delete_job(job_id: str, request: Request) -> dict[str, Any]:
    app = core(request)
    _job_or_404(app, job_id)
    app.jobs.delete(job_id)
    return {"ok": True, "deleted": job_id}


# ---------------------------------------------------------------------------- results
def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise refuse(400, f"format: one of {', '.join(FORMATS)}, not {fmt[:20]!r}")
    return fmt


@router.get("/api/jobs/{job_id}/files/{idx}/result")
async def file_result(job_id: str, idx: int, request: Request, format: str = "txt") -> Response:
    app = core(request)
    fmt = _format(format)
    _job_or_404(app, job_id)
    f = app.jobs.db.file(job_id, idx)
    if f is None:
        raise refuse(404, f"job {job_id!r} has no file {idx}")
    t = _transcript(app, f)
    if t is None and f["status"] == "done":
        raise refuse(410, f"file {idx} has no result: its record was deleted")
    if t is None:
        why = f": {f['error']}" if f.get("error") else ""
        raise refuse(409, f"file {idx} has no result: it is {f['status']}{why}")
    return _download(render(t, fmt), MEDIA[fmt], f"{Path(f['name']).stem}.{fmt}")


def _zip(app: App, files: list[dict[str, Any]], formats: tuple[str, ...]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            t = _transcript(app, f)
            if t is None:
                continue
            for fmt in formats:
                zf.writestr(f"{f['idx']:04d}-{Path(f['name']).stem}.{fmt}", render(t, fmt))
    return buf.getvalue()


@router.get("/api/jobs/{job_id}/results.zip")
async def results_zip(job_id: str, request: Request, format: str | None = None) -> Response:
    """Every finished file's result, in one format or (by default) all of them."""
    app = core(request)
    formats = (_format(format),) if format else FORMATS
    _job_or_404(app, job_id)
    files = app.jobs.db.files_of(job_id)
    body = _zip(app, files, formats)
    return _download(body, "application/zip", f"job-{job_id}.zip")


def job_csv(app: App, files: list[dict[str, Any]]) -> str:
    """One CSV for the whole batch: file, start, end, text (UTF-8 with a BOM, for Excel); with a `speaker` column
    before the text (the name where one is known, as a file's CSV) when any file has speaker labels."""
    return batch_csv([(f["name"], t) for f in files if (t := _transcript(app, f)) is not None])


@router.get("/api/jobs/{job_id}/results.csv")
async def results_csv(job_id: str, request: Request) -> Response:
    app = core(request)
    _job_or_404(app, job_id)
    return _download(job_csv(app, app.jobs.db.files_of(job_id)), MEDIA["csv"], f"job-{job_id}.csv")
