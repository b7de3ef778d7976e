"""Exports of history records (a selection, or a session) as one document: txt, srt, vtt, csv, json, docx.

Input is records as the HTTP API shows them (daemon.store.records.view). Timing:
- srt/vtt/docx put every segment on one timeline: a record that has a wall-clock start (live speech) sits at its
  start minus `t0` (the session's start, or the earliest record's); a file record follows the previous one.
- csv has one row per segment (a record without segments: one row) with the segment's times within its record.
Speakers show as the name given to their label where there is one (a record's `speaker_names`), else the label.
Pure functions: the caller may run them in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.output.formats import TimedText, printable, to_csv, to_srt, to_vtt

EXPORT_FORMATS = ("txt", "srt", "vtt", "csv", "json", "docx")
MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
CSV_HEADER = ("record_id", "created_at", "source", "language", "start", "end", "text", "speaker")
BOM = "\ufeff"


@dataclass(frozen=True)
class Cue:
    """One line of an export on its timeline: times in seconds from the export's start."""

    start: float
    end: float
    text: str
    speaker: str | None
    record: dict[str, Any]

    @property
    def line(self) -> str:
        return f"{self.speaker}: {self.text}" if self.speaker else self.text


def _epoch(ts: str | None) -> float | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() if ts else None


def record_title(r: dict[str, Any]) -> str:
    """How a record is named in a document: its file's name, or 'live' and its time."""
    name = printable(Path(r["source"]).name) if r.get("source") else r["kind"]
    return f"{name} · {(r.get('started_at') or r['created_at'])[:19].replace('T', ' ')} UTC"


def _segments(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's lines, each with its speaker as shown: the name given to its label (`speaker_names`), or
    the label; a live utterance's own label (`speaker`) stands for segments that carry none."""
    names: dict[str, str] = r.get("speaker_names") or {}
    segs = [s for s in r.get("segments") or [] if str(s.get("text", "")).strip()]
    if not segs and (r.get("text") or "").strip():
        segs = [{"start": 0.0, "end": float(r.get("duration_s") or 0.0), "text": r["text"]}]
    out = []
    for s in segs:
        label = s.get("speaker") or r.get("speaker")
        out.append({**s, "speaker": names.get(label, label) if label else None})
    return out


def timeline(records: Sequence[dict[str, Any]], t0: str | None) -> list[Cue]:
    """Every record's segments on one timeline (see the module's docstring)."""
    starts = [e for e in (_epoch(r.get("started_at")) for r in records) if e is not None]
    origin = _epoch(t0) if t0 else (min(starts) if starts else None)
    cues: list[Cue] = []
    running = 0.0
    for r in records:
        began = _epoch(r.get("started_at"))
        offset = began - origin if began is not None and origin is not None else running
        segs = _segments(r)
        for s in segs:
            start, end = offset + float(s["start"]), offset + float(s["end"])
            cues.append(Cue(round(start, 3), round(end, 3), str(s["text"]).strip(), s["speaker"], r))
        length = max([float(r.get("duration_s") or 0.0)] + [float(s["end"]) for s in segs])
        running = max(running, offset + length)
    return cues


def to_txt(records: Sequence[dict[str, Any]], headed: bool) -> str:
    """Session: one line per utterance. Selection (`headed`): each record's title, then its text."""
    if not headed:
        return "".join(c.line + "\n" for c in timeline(records, None))
    blocks = []
    for r in records:
        lines = [c.line for c in timeline([r], None)]
        blocks.append(record_title(r) + "\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def to_rows_csv(records: Sequence[dict[str, Any]]) -> str:
    """UTF-8 with a byte-order mark (Excel)."""
    rows = []
    for r in records:
        source = printable(Path(r["source"]).name) if r.get("source") else r["kind"]
        for s in _segments(r):
            start, end = f"{float(s['start']):.2f}", f"{float(s['end']):.2f}"
            speaker = s["speaker"] or ""
            rows.append((r["id"], r["created_at"], source, r.get("language") or "", start, end, s["text"], speaker))
    doc = to_csv(rows, CSV_HEADER)
    return doc if doc.startswith(BOM) else BOM + doc


def to_json(records: Sequence[dict[str, Any]], title: str, session: dict[str, Any] | None) -> str:
    body: dict[str, Any] = {"title": title, "records": list(records)}
    if session is not None:
        body["session"] = session
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def render_export(
    records: Sequence[dict[str, Any]], fmt: str, title: str, session: dict[str, Any] | None = None
) -> bytes:
    """The document; `session` (its row) makes a session export: its start is the timeline's origin."""
    t0 = session["started_at"] if session else None
    if fmt == "docx":
        from daemon.output.docx import to_docx

        return to_docx(title, records, timeline(records, t0), headed=session is None)
    if fmt == "txt":
        doc = to_txt(records, headed=session is None)
    elif fmt in ("srt", "vtt"):
        cues = [TimedText(c.start, c.end, c.line) for c in timeline(records, t0)]
        doc = to_srt(cues) if fmt == "srt" else to_vtt(cues)
    elif fmt == "csv":
        doc = to_rows_csv(records)
    elif fmt == "json":
        doc = to_json(records, title, session)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return doc.encode("utf-8", "surrogateescape")
