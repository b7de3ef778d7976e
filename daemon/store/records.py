"""The history as the HTTP API and the console see it: filtered pages of records and sessions (keyset paging),
edits of a record's text with the recognizer's text kept (history, revert), deletion with its audio file.

Built on the Store's connection and helpers (`_read`, `_tx`, `_reindex`): every call is one quick SQLite
statement or transaction, run on the core's loop. Errors the client can cause are `HistoryError`s carrying
their HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.errors import AsrboxError
from daemon.lang import NO_SPACE_LANGUAGES
from daemon.store.db import Record, Store, drop_records, fts_query, iso, utc_now

if TYPE_CHECKING:
    from daemon.batch.transcribe import Outcome

log = logging.getLogger(__name__)

MAX_LIMIT = 500
MAX_SEGMENTS = 20_000
MAX_TEXT = 1_000_000  # characters of one record's text
MAX_SECONDS = 1e7  # a segment's time (about 116 days): anything larger is not a time in a recording
MAX_CURSOR_KEY = 2**63 - 1  # a rowid is a signed 64-bit integer
SHOWN_ID = 80  # characters of an unknown id repeated in an error

_COLUMNS = (
    "r.rowid AS rowid, r.id, r.kind, r.status, r.source, r.session_id, r.created_at, r.started_at, r.ended_at, "
    "r.duration_s, r.language, r.raw_text, r.text, r.segments, r.audio_path, r.error, r.edited_at"
)


def _columns(store: Store) -> str:
    """The columns a view needs; with the speakers' migration, the utterance's own label too."""
    labelled = store._read_one("SELECT 1 FROM pragma_table_info('records') WHERE name='speaker'") is not None
    return _COLUMNS + (", r.speaker" if labelled else "")


class HistoryError(AsrboxError):
    """A request the history cannot serve; `http_status` says why (400 bad input, 404 unknown, 409 busy)."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class RecordFilter:
    """What `GET /api/records` may ask for; None = no condition."""

    q: str | None = None
    since: str | None = None  # ISO UTC as the store writes it
    until: str | None = None
    kind: str | None = None  # 'live' | 'file'
    session_id: str | None = None
    language: str | None = None
    speaker: str | None = None


# ---------------------------------------------------------------------------------------------- parsing
def parse_time(value: str | None, name: str, end_of_day: bool = False) -> str | None:
    """A date (`2026-03-05`) or ISO time (local time unless it has a zone) -> the store's ISO UTC form.
    With `end_of_day`, a bare date means the end of that day (an `until` that includes the day)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            dt = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.astimezone()  # the box's local time
        return iso(dt)
    except (ValueError, OverflowError):  # not a time, or one at the calendar's edge (year 1, 9999 + a zone)
        raise HistoryError(
            f"{name}: not a date or ISO time: {value[:40]!r} (e.g. 2026-03-05 or 2026-03-05T14:00)"
        ) from None


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """The key a cursor holds, checked against `shape` (the types of its parts); 400 if it is not ours."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise HistoryError("cursor: not a cursor this server gave (use next_cursor as it came)") from None
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or not all(isinstance(k, t) and _storable(k) for k, t in zip(key, shape, strict=True))
    ):
        raise HistoryError("cursor: not a cursor this server gave (use next_cursor as it came)")
    return key


def _storable(value: Any) -> bool:
    """A cursor's part SQLite can bind: an integer within 64 bits, text that is valid Unicode."""
    if isinstance(value, int):
        return abs(value) <= MAX_CURSOR_KEY
    return not isinstance(value, str) or valid_text(value)


def valid_text(text: str) -> bool:
    """Text that can be stored as UTF-8 (JSON lets a client send lone surrogates such as "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: str, where: str) -> str:
    if not valid_text(text):
        raise HistoryError(f"{where}: not valid Unicode text (a lone surrogate)")
    return text


def join_texts(texts: list[str], language: str | None) -> str:
    sep = "" if (language or "") in NO_SPACE_LANGUAGES else " "
    return sep.join(t.strip() for t in texts if t.strip())


# ---------------------------------------------------------------------------------------------- views
def view(row: sqlite3.Row) -> dict[str, Any]:
    """A record as the API shows it (contract: docs/api.md, Records)."""
    segments = json.loads(row["segments"]) if row["segments"] else []
    speakers = {s.get("speaker") for s in segments if isinstance(s, dict) and s.get("speaker")}
    out = {k: row[k] for k in ("id", "kind", "status", "source", "session_id", "created_at", "started_at")}
    out.update(
        ended_at=row["ended_at"],
        duration_s=row["duration_s"],
        language=row["language"],
        text=row["text"],
        raw_text=row["raw_text"],
        segments=segments,
        edited_at=row["edited_at"],
        has_audio=row["audio_path"] is not None,
        speaker=_get(row, "speaker") or (speakers.pop() if len(speakers) == 1 else None),
        error=row["error"],
    )
    return out


def _get(row: sqlite3.Row, key: str) -> Any:
    return row[key] if key in row.keys() else None  # noqa: SIM118 (`in row` looks at the values)


def record_row(store: Store, record_id: str) -> sqlite3.Row:
    row = store._read_one(f"SELECT {_columns(store)} FROM records r WHERE r.id=?", (record_id,))
    if row is None:
        raise HistoryError(f"no record {record_id[:SHOWN_ID]!r}", 404)
    return row


def get(store: Store, record_id: str) -> dict[str, Any]:
    return view(record_row(store, record_id))


def rows(store: Store, ids: list[str]) -> list[sqlite3.Row]:
    """The records `ids` (each must exist), oldest first."""
    found: list[sqlite3.Row] = []
    columns = _columns(store)
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ", ".join("?" * len(part))
        found += store._read(f"SELECT {columns} FROM records r WHERE r.id IN ({marks})", part)
    missing = set(ids) - {r["id"] for r in found}
    if missing:
        raise HistoryError(f"no record {sorted(missing)[0][:SHOWN_ID]!r}", 404)
    return sorted(found, key=lambda r: (r["created_at"], r["rowid"]))


# ---------------------------------------------------------------------------------------------- pages
def speaker_condition(speaker: str, live: bool) -> tuple[str, list[str]]:
    """SQL (on `records r`) for "said by `speaker`": a label (S1) or a name a user gave a label.

    A live utterance (`live`: the store has the speakers' migration) matches by its own label, or by the name
    given to that label in its session. A file record matches when any of its segments has the label, or a
    label the record's names give that name. instr first: records without speakers are skipped without
    parsing their JSON. An enrolled voice found in a file is stored as the record's name for its label, so it
    matches as a given name does."""
    seg = "json_extract(s.value, '$.speaker')"
    labelled = f"instr(r.segments, '\"speaker\"') > 0 AND EXISTS (SELECT 1 FROM json_each(r.segments) s WHERE {seg} = ?"
    if not live:  # before the speakers' migration: labels only (no names either)
        return f"({labelled}))", [speaker]
    named_in_record = "SELECT n.label FROM speaker_names n WHERE n.scope='record' AND n.scope_id=r.id AND n.name=?"
    in_segments = f"{labelled} OR {seg} IN ({named_in_record}))"
    named_in_session = (
        "EXISTS (SELECT 1 FROM speaker_names n WHERE n.scope='session' AND n.scope_id=r.session_id "
        "AND n.label=r.speaker AND n.name=?)"
    )
    own = f"r.speaker IS NOT NULL AND (r.speaker = ? OR {named_in_session})"
    return f"(({own}) OR ({in_segments}))", [speaker] * 4


def with_speaker_names(store: Store, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record with the names given to its speakers' labels (a live utterance: its session's; a file: its
    own), as `speaker_names`, where any were given."""
    from daemon.store.speakers import names

    known: dict[tuple[str, str], dict[str, str]] = {}
    out = []
    for r in records:
        scope = ("session", r["session_id"]) if r["kind"] == "live" and r["session_id"] else ("record", r["id"])
        if scope not in known:
            known[scope] = names(store, *scope)
        out.append({**r, "speaker_names": known[scope]} if known[scope] else r)
    return out


def page(
    store: Store, f: RecordFilter, limit: int, cursor: str | None, newest_first: bool = True
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of records matching `f` after `cursor`, newest first (or oldest first); and the next cursor.

    The order is the order the box stored them (rowid), which is `created_at`'s order unless the clock stepped
    (a box without a real-time clock before NTP): then stored order is the truer one. It lets a search walk the
    full-text index newest first and stop at the page's end instead of sorting every match."""
    where: list[str] = []
    params: list[Any] = []
    for cond, value in (
        ("r.created_at >= ?", f.since),
        ("r.created_at <= ?", f.until),
        ("r.kind = ?", f.kind),
        ("r.session_id = ?", f.session_id),
        ("r.language = ?", f.language),
    ):
        if value is not None:
            where.append(cond)
            params.append(value)
    columns = _columns(store)
    if f.speaker is not None:
        cond, values = speaker_condition(f.speaker, live=columns != _COLUMNS)
        where.append(cond)
        params += values
    key = "r.rowid"
    sql = f"SELECT {columns} FROM records r"
    if f.q is not None:
        match = fts_query(f.q)
        if not match:
            return [], None
        # the full-text index drives (CROSS JOIN): it yields matches in rowid order, newest first, lazily
        key, sql = "f.rowid", f"SELECT {columns} FROM records_fts f CROSS JOIN records r ON r.rowid = f.rowid"
        where.insert(0, "records_fts MATCH ?")
        params.insert(0, match)
    if cursor is not None:
        (after,) = decode_cursor(cursor, (int,))
        where.append(f"{key} {'<' if newest_first else '>'} ?")
        params.append(after)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {key} {'DESC' if newest_first else 'ASC'} LIMIT ?"
    found = store._read(sql, (*params, limit + 1))
    more = len(found) > limit
    found = found[:limit]
    return [view(r) for r in found], encode_cursor(found[-1]["rowid"]) if more and found else None


def session_row(store: Store, session_id: str) -> dict[str, Any]:
    row = store._read_one("SELECT id, name, started_at, ended_at, summary FROM sessions WHERE id=?", (session_id,))
    if row is None:
        raise HistoryError(f"no session {session_id[:SHOWN_ID]!r}", 404)
    return _session_view(row)


def _session_view(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["summary"] = json.loads(d["summary"]) if d["summary"] else {}
    return d


def sessions_page(store: Store, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Sessions, newest first, after `cursor`; and the next cursor."""
    sql = "SELECT id, name, started_at, ended_at, summary FROM sessions"
    params: list[Any] = []
    if cursor is not None:
        started, sid = decode_cursor(cursor, (str, str))
        sql += " WHERE (started_at, id) < (?, ?)"
        params += [started, sid]
    found = store._read(sql + " ORDER BY started_at DESC, id DESC LIMIT ?", (*params, limit + 1))
    more = len(found) > limit
    found = found[:limit]
    nxt = encode_cursor(found[-1]["started_at"], found[-1]["id"]) if more and found else None
    return [_session_view(r) for r in found], nxt


# ---------------------------------------------------------------------------------------------- edits
def check_segments(segments: Any) -> list[dict[str, Any]]:
    """Segments a client sent: a list of {start, end, text[, speaker]} with 0 <= start <= end; 400 otherwise."""
    if not isinstance(segments, list) or len(segments) > MAX_SEGMENTS:
        raise HistoryError(f"segments: a list of at most {MAX_SEGMENTS} objects")
    out = []
    for i, s in enumerate(segments):
        if not isinstance(s, dict) or not isinstance(s.get("text"), str):
            raise HistoryError(f"segments[{i}]: an object with start, end and text")
        start, end = _seconds(s.get("start"), i), _seconds(s.get("end"), i)
        if not start <= end:
            raise HistoryError(f"segments[{i}]: needs 0 <= start <= end")
        seg: dict[str, Any] = {"start": start, "end": end, "text": check_text(s["text"], f"segments[{i}].text")}
        speaker = s.get("speaker")
        if speaker is not None:
            if not isinstance(speaker, str):
                raise HistoryError(f"segments[{i}]: speaker must be a string")
            seg["speaker"] = check_text(speaker, f"segments[{i}].speaker")
        out.append(seg)
    return out


def _seconds(value: Any, i: int) -> float:
    """A segment's start or end: a finite number of seconds in 0..MAX_SECONDS (JSON allows Infinity, NaN and
    integers too large for a float; none of them is a time, and Infinity cannot be sent back as JSON)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise HistoryError(f"segments[{i}]: start and end must be numbers (seconds)")
    if isinstance(value, int) and abs(value) > MAX_SECONDS:
        value = math.inf  # float() of a 400-digit integer raises
    seconds = float(value)
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
        raise HistoryError(f"segments[{i}]: needs 0 <= start <= end <= {MAX_SECONDS:.0f} seconds")
    return seconds


def _editable(store: Store, record_id: str) -> sqlite3.Row:
    row = record_row(store, record_id)
    if row["status"] != "done":
        raise HistoryError(f"record {record_id} is {row['status']}: only a transcribed record can be edited", 409)
    return row


def edit(store: Store, record_id: str, text: str | None, segments: list[dict[str, Any]] | None) -> dict[str, Any]:
    """New text and/or segments; the old ones go to `record_edits` (the first edit keeps the recognizer's).

    Segments alone: the text becomes their texts joined. Text alone: a record of one segment gets it as that
    segment's text; the segments of a longer record keep their times and texts (edit those through segments)."""
    row = _editable(store, record_id)
    if text is None and segments is None:
        raise HistoryError("nothing to change: give text and/or segments")
    if text is not None and len(text) > MAX_TEXT:
        raise HistoryError(f"text: at most {MAX_TEXT} characters")
    if text is not None:
        check_text(text, "text")
    old_segments = json.loads(row["segments"]) if row["segments"] else []
    if segments is None:
        segments = [{**old_segments[0], "text": text}] if len(old_segments) == 1 else old_segments
    if text is None:
        text = join_texts([s["text"] for s in segments], row["language"])
    _apply(store, row, text, segments, utc_now())
    return get(store, row["id"])


def _apply(store: Store, row: sqlite3.Row, text: str, segments: list[dict[str, Any]], edited_at: str | None) -> None:
    new_segments = json.dumps(segments, ensure_ascii=False)
    with store._tx() as db:
        db.execute(
            "INSERT INTO record_edits (record_id, edited_at, old_text, new_text, old_segments, new_segments) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (row["id"], utc_now(), row["text"], text, row["segments"], new_segments),
        )
        db.execute(
            "UPDATE records SET text=?, segments=?, edited_at=? WHERE id=?", (text, new_segments, edited_at, row["id"])
        )
        store._reindex(row["id"])


def edits(store: Store, record_id: str) -> list[dict[str, Any]]:
    """Every change of the record's text, oldest first (a revert is one too)."""
    record_row(store, record_id)
    found = store._read(
        "SELECT id, edited_at, old_text, new_text, old_segments, new_segments FROM record_edits "
        "WHERE record_id=? ORDER BY id",
        (record_id,),
    )
    out = []
    for r in found:
        d = dict(r)
        for k in ("old_segments", "new_segments"):
            d[k] = json.loads(d[k]) if d[k] else []
        out.append(d)
    return out


def revert(store: Store, record_id: str) -> dict[str, Any]:
    """Back to the recognizer's text and segments (those before the first edit); itself recorded as an edit."""
    row = _editable(store, record_id)
    first = store._read_one(
        "SELECT old_text, old_segments FROM record_edits WHERE record_id=? ORDER BY id LIMIT 1", (record_id,)
    )
    if first is None or row["edited_at"] is None:
        return view(row)  # never edited, or already the recognizer's
    segments = json.loads(first["old_segments"]) if first["old_segments"] else []
    _apply(store, row, first["old_text"] or "", segments, None)
    return get(store, record_id)


# ---------------------------------------------------------------------------------------------- files
def audio_file(store: Store, row: sqlite3.Row) -> Path | None:
    """The record's audio file as recorded: a path relative to the store must stay inside it; an absolute one
    (a user's file transcribed in place) is served as recorded. None when there is none (or it is gone)."""
    stored = row["audio_path"]
    if not stored:
        return None
    root = store.root.resolve()
    path = Path(stored)
    if not path.is_absolute():
        path = (root / path).resolve()
        if not path.is_relative_to(root):
            log.warning("record %s: audio path %r leaves the store; not served", row["id"], stored)
            return None
    return path if path.is_file() else None


def in_store(store: Store, path: Path) -> bool:
    return path.resolve().is_relative_to(store.root.resolve())


def delete(store: Store, record_id: str) -> dict[str, Any]:
    """Delete a record, its edits, the names given to its labels and its audio file when the store holds it (a
    user's own file stays), the rows in one transaction.
    A pending record (an utterance the worker has yet to transcribe) is refused with 409."""
    row = record_row(store, record_id)
    if row["status"] == "pending":
        raise HistoryError(f"record {record_id} is still being transcribed; delete it once it is done", 409)
    audio = audio_file(store, row)
    with store._tx() as db:
        drop_records(db, "id=? AND status != 'pending'", (record_id,))
    removed = False
    if audio is not None and in_store(store, audio):
        try:
            os.unlink(audio)
            removed = True
        except OSError as exc:
            log.warning("record %s deleted; its audio file stays: %s", record_id, exc.strerror or exc)
    return {"id": record_id, "audio_deleted": removed}


# ---------------------------------------------------------------------------------------------- exports
def export(store: Store, since: str | None, until: str | None, speaker: str | None = None) -> Iterator[Record]:
    """Records for `asrbox history export`, oldest first; with `speaker`, only those said by that label or given
    name (as `page` filters them, walked in SQL a page at a time)."""
    if speaker is None:
        yield from store.iter_all(since=since, until=until)
        return
    f = RecordFilter(since=since, until=until, speaker=speaker)
    cursor: str | None = None
    while True:
        found, cursor = page(store, f, MAX_LIMIT, cursor, newest_first=False)
        for r in found:
            rec = store.get(r["id"])
            if rec is not None:
                yield rec
        if cursor is None:
            return


# ---------------------------------------------------------------------------------------------- file outcomes
def save_file(
    store: Store, outcome: Outcome, source: str | None, audio_path: str | None, record_id: str | None = None
) -> str:
    """Record a transcribed file's outcome in one transaction (`write_file`); the record's id."""
    with store._tx() as db:
        return write_file(store, db, outcome, source, audio_path, record_id)


def write_file(
    store: Store,
    db: sqlite3.Connection,
    outcome: Outcome,
    source: str | None,
    audio_path: str | None,
    record_id: str | None = None,
) -> str:
    """Inside `store._tx()`: a file's record, done or failed, indexed for search, and the names that enrolled
    voices found in the file give its labels. Every path that transcribes files (CLI, /v1, jobs, Wyoming) records
    them here. `record_id`: the pending record begun for the file (the CLI's), else a new record."""
    t = outcome.transcript
    rid = record_id or _new_file_record(db, source, audio_path)
    if t is None:
        db.execute("UPDATE records SET status='failed', error=? WHERE id=?", (outcome.error or "no transcript", rid))
        return rid
    from daemon.batch.transcribe import segment_dict  # the CLI's history commands need not load the transcriber

    meta = {**t.meta, "warning": outcome.warning} if outcome.warning else t.meta
    engine_s = outcome.engine_s if outcome.engine_s is not None else t.processing_s
    db.execute(
        "UPDATE records SET status='done', language=?, raw_text=?, text=?, segments=?, engine=?, processing_s=?, "
        "duration_s=?, error=NULL, meta=? WHERE id=?",
        (
            t.language,
            t.raw_text,
            t.text,
            json.dumps([segment_dict(x) for x in t.segments], ensure_ascii=False),
            json.dumps({**t.engine, "processing_s": round(engine_s, 3)}),
            round(t.processing_s, 3),
            t.duration_s,
            json.dumps(meta, ensure_ascii=False) if meta else None,
            rid,
        ),
    )
    store._reindex(rid)
    db.executemany(  # an enrolled voice found in the file names its label in this record
        "INSERT OR REPLACE INTO speaker_names (scope, scope_id, label, name) VALUES ('record', ?, ?, ?)",
        [(rid, label, name) for label, name in t.speaker_names.items()],
    )
    return rid


def _new_file_record(db: sqlite3.Connection, source: str | None, audio_path: str | None) -> str:
    rid = str(uuid.uuid4())
    db.execute(
        "INSERT INTO records (id, kind, status, source, created_at, audio_path) VALUES (?, 'file', 'pending', ?, ?, ?)",
        (rid, source, utc_now(), audio_path),
    )
    return rid
