"""Transcript documents: txt, json, srt, vtt, csv for one file; csv and json for history exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.store.db import Record

FORMATS = ("txt", "json", "srt", "vtt", "csv")


@dataclass(frozen=True)
class TimedText:
    start: float
    end: float
    text: str


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

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
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


def to_srt(segments: Sequence[TimedText]) -> str:
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{_cue_text(s.text)}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Sequence[TimedText]) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{_cue_text(s.text)}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_csv(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def render(t: FileTranscript, fmt: str) -> str:
    if fmt == "txt":
        return t.text + "\n"
    if fmt == "json":
        return json.dumps(t.as_json(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return to_srt(t.segments)
    if fmt == "vtt":
        return to_vtt(t.segments)
    if fmt == "csv":
        return to_csv(((f"{s.start:.2f}", f"{s.end:.2f}", s.text) for s in t.segments), ("start", "end", "text"))
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
