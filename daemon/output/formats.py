"""Transcript documents: txt, json, srt, vtt, csv for one file; csv and json for history exports. Every CSV
starts with a UTF-8 byte-order mark, so that Excel shows non-ASCII text (Chinese) correctly.

Every output file is written one way, `write_output` (temp file + rename; errors are one line), and every
document sent to stdout goes through `write_stdout`. File names that are not valid UTF-8 reach us with
their undecodable bytes as lone surrogates (PEP 383): written back as those bytes where the bytes are the
file name (stdout, txt/srt/vtt/csv documents), shown as `\\xNN` in JSON, which must be valid UTF-8.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import AsrboxError
from daemon.store.db import Record
from daemon.transcript import Word

FORMATS = ("txt", "json", "srt", "vtt", "csv")


@dataclass(frozen=True)
class TimedText:
    start: float
    end: float
    text: str
    speaker: str | None = None  # S1, S2... when speakers were labelled
    words: tuple[Word, ...] = ()  # word times in file time, when asked for (speaker labels); not exported


@dataclass(frozen=True)
class FileTranscript:
    file: str
    duration_s: float
    language: str
    text: str
    raw_text: str
    segments: tuple[TimedText, ...]
    engine: dict[str, Any]
    processing_s: float
    record_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # post-processing notes: hotword replacements
    speaker_names: dict[str, str] = field(default_factory=dict)  # label -> the name a user gave it

    def who(self, s: TimedText) -> str | None:
        return self.speaker_names.get(s.speaker, s.speaker) if s.speaker else None

    def as_json(self) -> dict[str, Any]:
        doc = self._json()
        if any(s.speaker for s in self.segments):
            self.add_speakers(doc["segments"], doc)
        return doc

    def add_speakers(self, segments: list[dict[str, Any]], doc: dict[str, Any]) -> None:
        """`speaker` and `speaker_name` on each of `segments` (this transcript's, in order) and the `speakers`
        list ({label, name}) on `doc`: null and empty where nobody was labelled."""
        for seg, s in zip(segments, self.segments, strict=True):
            seg["speaker"], seg["speaker_name"] = s.speaker, self.speaker_names.get(s.speaker or "")
        labels = sorted({s.speaker for s in self.segments if s.speaker}, key=lambda x: (len(x), x))
        doc["speakers"] = [{"label": x, "name": self.speaker_names.get(x)} for x in labels]

    def _json(self) -> dict[str, Any]:
        return {
            "file": printable(self.file),
            "duration_s": round(self.duration_s, 3),
            "language": self.language,
            "text": self.text,
            "raw_text": self.raw_text,
            "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in self.segments],
            "engine": self.engine,
            "processing_s": round(self.processing_s, 3),
            "record_id": self.record_id,
            "hotwords": self.meta.get("hotwords", []),
        }


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(text: str) -> str:
    # a blank line would end the cue early
    return "\n".join(line for line in text.splitlines() if line.strip()) or "…"


def _said(s: TimedText, names: dict[str, str] | None) -> str:
    """A cue's text, `S1: ...` (or the speaker's name) when speakers were labelled."""
    text = _cue_text(s.text)
    return f"{(names or {}).get(s.speaker, s.speaker)}: {text}" if s.speaker else text


def to_srt(segments: Sequence[TimedText], names: dict[str, str] | None = None) -> str:
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{_said(s, names)}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Sequence[TimedText], names: dict[str, str] | None = None) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{_said(s, names)}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


BOM = "\ufeff"  # Excel reads a CSV as UTF-8 only when it starts with a byte-order mark


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet takes a cell starting so for a formula


def cell(value: Any) -> Any:
    """A CSV cell as text a spreadsheet shows as it is: text that would start a formula gets a leading "'"
    (a name, a file name or a transcript line could otherwise run as one when the CSV is opened)."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def to_csv(rows: Iterable[Sequence[Any]], header: Sequence[str], lineterminator: str = "\n") -> str:
    """A CSV document, starting with a BOM (Excel), every text cell made safe to open (`cell`)."""
    buf = io.StringIO()
    buf.write(BOM)
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerow(header)
    w.writerows([cell(v) for v in row] for row in rows)
    return buf.getvalue()


def csv_rows(t: FileTranscript, file: str | None = None, speakers: bool = False) -> list[tuple[str, ...]]:
    """A transcript's segments as CSV rows (start, end, text), with the file first when `file` is given and a
    speaker column before the text (the name where one was given) when `speakers`."""
    lead = () if file is None else (file,)
    if speakers:
        return [(*lead, f"{s.start:.2f}", f"{s.end:.2f}", t.who(s) or "", s.text) for s in t.segments]
    return [(*lead, f"{s.start:.2f}", f"{s.end:.2f}", s.text) for s in t.segments]


def _csv_header(file: bool, speakers: bool) -> tuple[str, ...]:
    return (*(("file",) if file else ()), "start", "end", *(("speaker",) if speakers else ()), "text")


def batch_csv(files: Sequence[tuple[str, FileTranscript]]) -> str:
    """One CSV for a batch of (file name, transcript): file, start, end, text; with a `speaker` column before the
    text (the name where one is known, as a file's CSV) when any file has speaker labels. `asrbox transcribe
    --csv-file` and a job's results.csv."""
    speakers = any(s.speaker for _, t in files for s in t.segments)
    return to_csv([row for name, t in files for row in csv_rows(t, name, speakers)], _csv_header(True, speakers))


def render(t: FileTranscript, fmt: str) -> str:
    if fmt == "txt":
        return t.text + "\n"
    if fmt == "json":
        return json.dumps(t.as_json(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return to_srt(t.segments, t.speaker_names)
    if fmt == "vtt":
        return to_vtt(t.segments, t.speaker_names)
    if fmt == "csv":
        speakers = any(s.speaker for s in t.segments)  # a speaker column (the name where one was given)
        return to_csv(csv_rows(t, speakers=speakers), _csv_header(False, speakers))
    raise ValueError(f"unknown format {fmt!r}")


HISTORY_FIELDS = (
    "id",
    "created_at",
    "kind",
    "status",
    "source",
    "session_id",
    "started_at",
    "ended_at",
    "duration_s",
    "language",
    "text",
    "raw_text",
    "engine",
    "processing_s",
    "audio_path",
    "error",
)


def history_csv(records: Iterable[Record]) -> str:
    def row(r: Record) -> list[Any]:
        d = r.as_dict()
        d["engine"] = r.engine.get("model", "") if r.engine else ""
        return [("" if d[k] is None else d[k]) for k in HISTORY_FIELDS]

    return to_csv((row(r) for r in records), HISTORY_FIELDS)


def history_json(records: Iterable[Record]) -> str:
    return json.dumps([r.as_dict() for r in records], ensure_ascii=False, indent=2) + "\n"


class OutputError(AsrboxError):
    """An output file or folder cannot be written."""

    exit_code = 73  # EX_CANTCREAT


def printable(text: str) -> str:
    """`text` with the undecodable bytes of a file name (lone surrogates) shown as `\\xNN`: valid UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def output_folder(path: Path) -> Path:
    """Create the folder for output files and check that a file can be written in it; one-line errors."""
    shown = printable(str(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot use {shown} as the output folder: a file has that name") from None
    except OSError as exc:
        raise OutputError(f"cannot create output folder {shown}: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write in output folder {shown}: {exc.strerror or exc}") from None
    return path


def write_output(path: Path, doc: str) -> None:
    """Write `doc` (UTF-8) to `path` atomically: a temporary file in the same folder, then a rename.

    A device or pipe (`-o /dev/stdout`) is written in place, never replaced. Errors: OutputError, one line.
    """
    data = doc.encode("utf-8", "surrogateescape")
    shown = printable(str(path))
    try:
        real = Path(os.path.realpath(path))
        if real.is_dir():
            raise OutputError(f"cannot write {shown}: a folder has that name")
        if real.exists() and not real.is_file():
            with real.open("wb") as fh:
                fh.write(data)
            return
        if not real.parent.exists():
            real.parent.mkdir(parents=True)
        _replace_with(real, data)
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from None


def _replace_with(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)  # mode as umask allows
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_stdout(doc: str) -> None:
    """Send `doc` to stdout as UTF-8, file names byte for byte, whatever the locale's encoding."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (tests capturing output)
        sys.stdout.write(doc)
    else:
        buffer.write(doc.encode("utf-8", "surrogateescape"))
        buffer.flush()
