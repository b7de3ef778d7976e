"""Multipart uploads streamed to disk: never whole in memory, with a size limit and the store's free-space floor.

`receive(request, folder, ...)` feeds `request.stream()` through python-multipart's streaming parser; each file
part goes to a temporary file in `folder` (written from a worker thread a megabyte at a time, so the loop never
blocks on the disk), each plain field into a small string. A refused upload (too large, the disk would cross
the floor, a malformed body, a client that went away) leaves nothing behind. The names clients send are for
display only (`display_name`); where a file is stored is always the caller's choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import HTTPException, Request
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from daemon.http.deps import refuse
from daemon.http.limits import UPLOAD
from daemon.speakers.files import SpeakerRequest

log = logging.getLogger(__name__)

MB = 1024 * 1024
FLUSH_BYTES = 1 * MB  # written to disk from a thread in pieces of about this size
SPACE_CHECK_BYTES = 16 * MB  # free space is looked at again after this much
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 100_000
NAME_MAX = 200
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")
_COUNT = re.compile(r"[0-9]{1,3}")  # a number of speakers: ASCII digits only
MAX_SPEAKERS = 50


def display_name(raw: str | None) -> str:
    """A client's file name made safe to show and log: its last path component only, NFC, no control, format
    (bidi overrides, zero-width) or unassigned characters, no leading dots, at most 200 characters."""
    text = unicodedata.normalize("NFC", raw or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
    text = " ".join(text.split()).lstrip(". ")
    if len(text) > NAME_MAX:
        stem, dot, ext = text.rpartition(".")
        text = (stem[: NAME_MAX - len(ext) - 2] + "…." + ext) if dot and len(ext) <= 10 else text[: NAME_MAX - 1] + "…"
    return text or "file"


@dataclass
class ReceivedFile:
    field: str
    name: str  # display name (sanitized)
    path: Path  # a temporary file of ours in the folder given to `receive`
    bytes: int = 0
    content_type: str = ""


@dataclass
class Upload:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)

    def field(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool | None:
        """A true/false form field (None when absent or empty); 400 naming the field when it is neither."""
        value = self.field(name)
        if value is None or value.strip() == "":
            return None
        v = value.strip().lower()
        if v in TRUE or v in FALSE:
            return v in TRUE
        raise refuse(400, f"{name}: expected true or false, got {value[:40]!r}")

    def speakers(self, default: bool = False) -> SpeakerRequest | None:
        """`speakers` ("auto" or N), `min_speakers`, `max_speakers`, read as `asrbox transcribe --speakers` reads
        them (SpeakerRequest.parse); None when none is given, unless `default` ([speakers] files = true). 400 with
        one line when they make no sense."""
        raw = (self.field("speakers") or "").strip()
        low, high = self._count("min_speakers"), self._count("max_speakers")
        if not raw and low is None and high is None and not default:
            return None
        if raw not in ("", "auto") and not _COUNT.fullmatch(raw):
            raise refuse(400, f"speakers: expected 'auto' or a whole number from 1 to {MAX_SPEAKERS}, got {raw[:40]!r}")
        try:
            return SpeakerRequest.parse(raw or "auto", low, high)
        except ValueError as exc:
            raise refuse(400, f"speakers: {exc}") from None

    def speakers_checked(self, default: bool, missing: Callable[[], str | None]) -> SpeakerRequest | None:
        """As `speakers`, with the models checked (`missing`: why they are not there, or None): asked for in the
        request without them, 409; asked only by `[speakers] files = true`, no labels (the text still comes)."""
        request = self.speakers(default)
        why = missing() if request is not None else None
        if why is None:
            return request
        if any((self.field(k) or "").strip() for k in ("speakers", "min_speakers", "max_speakers")):
            raise refuse(409, why)
        log.info("speakers not labelled ([speakers] files = true): %s", why)
        return None

    def _count(self, name: str) -> int | None:
        """`min_speakers`/`max_speakers`: ASCII digits, 1-50 (Python's int() would take '１', '1_0', ' 0')."""
        value = (self.field(name) or "").strip()
        if not value:
            return None
        if not _COUNT.fullmatch(value) or not 1 <= int(value) <= MAX_SPEAKERS:
            raise refuse(400, f"{name}: expected a whole number from 1 to {MAX_SPEAKERS}, got {value[:40]!r}")
        return int(value)

    def discard(self) -> None:
        for f in self.files:
            with contextlib.suppress(OSError):
                f.path.unlink()


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    file: ReceivedFile | None = None
    fh: IO[bytes] | None = None
    buf: bytearray = field(default_factory=bytearray)


class _Receiver:
    """The parser's callbacks: one part at a time; file bytes wait in `pending` for the next flush."""

    def __init__(self, folder: Path, max_file_bytes: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.upload = Upload()
        self.part = _Part()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.pending: list[tuple[IO[bytes], bytes, bool]] = []  # (file, data, close after)
        self.pending_bytes = 0
        self.parts = 0
        self.ended = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise refuse(413, f"too many parts in one request (at most {MAX_PARTS})")
        self.part = _Part()
        self.headers = {}

    def header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        _, opts = parse_options_header(self.headers.get("content-disposition", b""))
        p = self.part
        p.name = opts.get(b"name", b"").decode("utf-8", "replace")
        raw = opts.get(b"filename")
        p.content_type = self.headers.get("content-type", b"").decode("latin-1")
        if raw is None:
            return
        p.filename = raw.decode("utf-8", "replace")
        if ".." in p.filename.replace("\\", "/").split("/"):
            raise refuse(400, f"file name {display_name(p.filename)!r}: a name must not climb folders ('..')")
        path = self.folder / f".part-{uuid.uuid4().hex}"
        p.fh = path.open("xb")
        p.file = ReceivedFile(p.name, display_name(p.filename), path, 0, p.content_type)
        self.upload.files.append(p.file)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        p = self.part
        if p.file is None:
            if len(p.buf) + end - start > MAX_FIELD_BYTES:
                raise refuse(413, f"field {p.name!r} is too long (at most {MAX_FIELD_BYTES} bytes)")
            p.buf.extend(data[start:end])
            return
        p.file.bytes += end - start
        if p.file.bytes > self.max_file_bytes:
            raise refuse(413, f"{p.file.name}: larger than the limit of {self.max_file_bytes // MB} MB")
        p.buf.extend(data[start:end])
        if len(p.buf) >= FLUSH_BYTES:
            self._queue(close=False)

    def _queue(self, close: bool) -> None:
        p = self.part
        assert p.fh is not None
        self.pending.append((p.fh, bytes(p.buf), close))
        self.pending_bytes += len(p.buf)
        p.buf.clear()

    def part_end(self) -> None:
        p = self.part
        if p.file is not None:
            self._queue(close=True)
        else:
            self.upload.fields.setdefault(p.name, []).append(p.buf.decode("utf-8", "replace"))

    def end(self) -> None:
        self.ended = True

    def flush(self) -> int:
        """A worker thread's: write what is pending; how many bytes."""
        pending, self.pending, n, self.pending_bytes = self.pending, [], self.pending_bytes, 0
        for fh, data, close in pending:
            fh.write(data)
            if close:
                fh.close()
        return n

    def close_all(self) -> None:
        for fh, _, _ in self.pending:
            fh.close()
        if self.part.fh is not None:
            self.part.fh.close()


def free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


async def receive(request: Request, folder: Path, *, max_file_bytes: int, min_free_bytes: int) -> Upload:
    """Stream a multipart/form-data body into `folder` (temporary files); 4xx/507 HTTPException on refusal."""
    request.scope[UPLOAD] = True  # this route streams its body to disk: the cap on other bodies does not apply
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    boundary = opts.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        await _drain(request)
        raise refuse(415, "send the files as multipart/form-data")
    if len(boundary) > MAX_BOUNDARY:
        await _drain(request)
        raise refuse(400, f"malformed multipart body: the boundary is longer than {MAX_BOUNDARY} characters")
    folder.mkdir(parents=True, exist_ok=True)
    declared = int(request.headers.get("content-length") or 0)
    if free_bytes(folder) - declared < min_free_bytes:
        raise refuse(507, "not enough free space on the box's store for this upload")
    rx = _Receiver(folder, max_file_bytes)
    try:
        await _pump(request, rx, folder, min_free_bytes)
    except BaseException as exc:
        rx.close_all()
        rx.upload.discard()
        if isinstance(exc, ClientDisconnect):
            raise refuse(400, "the client went away before the upload was complete") from None
        if isinstance(exc, OSError):
            raise refuse(507, f"cannot store the upload: {exc.strerror or exc}") from None
        raise
    return rx.upload


MAX_BOUNDARY = 70  # RFC 2046
DRAIN_BYTES = 4 * MB


async def _drain(request: Request) -> None:
    """Read (and drop) a small refused body before answering: closing with unread input resets the connection,
    and the client would never see why it was refused. A large body is cut off instead."""
    seen = 0
    with contextlib.suppress(ClientDisconnect):
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_BYTES:
                return


async def _pump(request: Request, rx: _Receiver, folder: Path, min_free_bytes: int) -> None:
    parser = MultipartParser(opts_boundary(request), rx.callbacks())  # type: ignore[arg-type]
    since_check = 0
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except HTTPException:
            raise
        except Exception as exc:  # python-multipart's parse errors
            raise refuse(400, f"malformed multipart body: {exc}") from None
        if rx.pending_bytes >= FLUSH_BYTES or (rx.pending and rx.pending[-1][2]):
            if since_check >= SPACE_CHECK_BYTES:  # room for what is pending and the next stretch, or refused
                since_check = 0
                if free_bytes(folder) - rx.pending_bytes - SPACE_CHECK_BYTES < min_free_bytes:
                    raise refuse(507, "the upload would fill the box's store past its free-space floor")
            since_check += await asyncio.to_thread(rx.flush)
    if not rx.ended:
        raise refuse(400, "malformed multipart body: it ends before its closing boundary")
    if rx.pending:
        await asyncio.to_thread(rx.flush)
    await asyncio.to_thread(_sync, [f.path for f in rx.upload.files])


def opts_boundary(request: Request) -> bytes:
    _, opts = parse_options_header(request.headers.get("content-type", ""))
    return opts[b"boundary"]


def _sync(paths: list[Path]) -> None:
    """The received files are on disk before they are accepted (a job resumed after a crash finds them)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
