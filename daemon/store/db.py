"""SQLite (WAL) store of every transcription: file jobs and live utterances, with full-text search.

Schema changes are numbered migrations applied in order (`PRAGMA user_version`). Full-text search uses FTS5
with every CJK character indexed as its own token, so Chinese (and Japanese/Korean) text is searchable by
any substring of characters, not only by whole runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from daemon.errors import StoreError

log = logging.getLogger(__name__)

DB_NAME = "asrbox.db"

MIGRATIONS: tuple[str, ...] = (
    # 1: records + full-text index
    """
    CREATE TABLE records (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('file', 'live')),
        status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
        source TEXT,
        source_fingerprint TEXT,
        session_id TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        duration_s REAL,
        language TEXT,
        raw_text TEXT,
        text TEXT,
        segments TEXT,
        engine TEXT,
        processing_s REAL,
        audio_path TEXT,
        error TEXT
    );
    CREATE INDEX records_created ON records (created_at);
    CREATE INDEX records_source ON records (source, source_fingerprint, status);
    CREATE INDEX records_session ON records (session_id);
    CREATE VIRTUAL TABLE records_fts USING fts5 (body);
    """,
    # 2: live path: sessions, the outbox of finals (seq = per-device publish order), speech end time
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        name TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        summary TEXT
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        speech_end_ts REAL,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_unsent ON outbox (sent_at, seq);
    ALTER TABLE records ADD COLUMN speech_end_ts REAL;
    """,
    # 3: size of each archived audio file (for the quota)
    """
    ALTER TABLE records ADD COLUMN audio_bytes INTEGER;
    CREATE INDEX records_audio ON records (audio_path) WHERE audio_path IS NOT NULL;
    """,
    # 4: what post-processing did (hotword replacements, punctuation source), as JSON
    """
    ALTER TABLE records ADD COLUMN meta TEXT;
    """,
    # 5: pronunciation practice attempts (per learner and session)
    """
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        record_id TEXT,
        session_id TEXT,
        learner TEXT,
        language TEXT,
        target TEXT NOT NULL,
        heard TEXT NOT NULL,
        score INTEGER NOT NULL,
        items TEXT NOT NULL
    );
    CREATE INDEX attempts_learner ON attempts (learner, created_at);
    CREATE INDEX attempts_session ON attempts (session_id, created_at);
    """,
    # 6: transcription attempts per record (counted before each try, so a row that crashes the process counts)
    """
    ALTER TABLE records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: durable transcription jobs (HTTP API, console): one row a job, one a file; uploads live under the store
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('held', 'queued', 'running', 'done', 'failed', 'cancelled')),
        options TEXT NOT NULL
    );
    CREATE TABLE job_files (
        job_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        progress REAL NOT NULL DEFAULT 0,
        duration_s REAL,
        record_id TEXT,
        error TEXT,
        PRIMARY KEY (job_id, idx)
    );
    CREATE INDEX job_files_status ON job_files (status, job_id, idx);
    CREATE INDEX jobs_created ON jobs (created_at);
    """,
    # 8: edits of a record's text: the recognizer's text stays in the record's history (revert possible)
    """
    CREATE TABLE record_edits (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL,
        edited_at TEXT NOT NULL,
        old_text TEXT,
        new_text TEXT,
        old_segments TEXT,
        new_segments TEXT
    );
    CREATE INDEX record_edits_record ON record_edits (record_id, id);
    ALTER TABLE records ADD COLUMN edited_at TEXT;
    CREATE INDEX records_kind ON records (kind);
    CREATE INDEX records_language ON records (language);
    CREATE INDEX sessions_started ON sessions (started_at);
    """,
    # 9: API keys (only a hash is kept; the key is shown once, at creation)
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    """,
    # 10: speakers: a live utterance's label and embedding (192 float32), names given to a session's or a file
    # record's labels, enrolled voices (name + embedding; the audio is not kept)
    """
    ALTER TABLE records ADD COLUMN speaker TEXT;
    ALTER TABLE records ADD COLUMN speaker_embedding BLOB;
    CREATE INDEX records_speaker ON records (speaker, created_at) WHERE speaker IS NOT NULL;
    CREATE TABLE speaker_names (
        scope TEXT NOT NULL CHECK (scope IN ('session', 'record')),
        scope_id TEXT NOT NULL,
        label TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (scope, scope_id, label)
    );
    CREATE TABLE voices (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        embedding BLOB NOT NULL,
        seconds REAL NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
)

BUSY_TIMEOUT_S = 10.0  # two connections (the daemon's and retention's) wait for each other this long

_CJK = re.compile(r"([\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])")


def utc_now() -> str:
    return iso(datetime.now(UTC))


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def index_text(text: str) -> str:
    """Text as FTS5 tokens: CJK characters separated so each is a token."""
    return _CJK.sub(r" \1 ", text)


def fts_query(query: str) -> str:
    """A user's query -> an FTS5 query: each word a phrase of its tokens, all words required."""
    words = [w for w in query.split() if w.strip()]
    phrases = []
    for w in words:
        tokens = index_text(w).split()
        if tokens:
            phrases.append('"' + " ".join(t.replace('"', '""') for t in tokens) + '"')
    return " AND ".join(phrases)


@dataclass(frozen=True)
class Record:
    id: str
    kind: str
    status: str
    source: str | None
    session_id: str | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    language: str | None
    raw_text: str | None
    text: str | None
    segments: list[dict[str, Any]]
    engine: dict[str, Any]
    processing_s: float | None
    audio_path: str | None
    error: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = (
    "id, kind, status, source, session_id, created_at, started_at, ended_at, duration_s, language, "
    "raw_text, text, segments, engine, processing_s, audio_path, error, meta, attempts"
)


class ArchivedAudio(NamedTuple):
    """One archived audio file that retention may delete (its record is not pending)."""

    rowid: int
    id: str
    audio_path: str
    size: int
    created_at: str


def _record(row: sqlite3.Row) -> Record:
    d = dict(row)
    d["segments"] = json.loads(d["segments"]) if d["segments"] else []
    d["engine"] = json.loads(d["engine"]) if d["engine"] else {}
    d["meta"] = json.loads(d["meta"]) if d["meta"] else {}
    return Record(**d)


def drop_records(db: sqlite3.Connection, match: str, params: Sequence[Any]) -> int:
    """Inside a transaction: the records matching `match` (SQL on `records`) go, with what hangs on them: their
    search entries, their edits, the names given to their labels. How many records went. Every path that
    deletes records (history, the records API, retention, jobs) deletes them here."""
    ids = f"SELECT id FROM records WHERE {match}"
    db.execute(f"DELETE FROM records_fts WHERE rowid IN (SELECT rowid FROM records WHERE {match})", params)
    db.execute(f"DELETE FROM record_edits WHERE record_id IN ({ids})", params)
    db.execute(f"DELETE FROM speaker_names WHERE scope='record' AND scope_id IN ({ids})", params)
    return int(db.execute(f"DELETE FROM records WHERE {match}", params).rowcount)


class Store:
    """One connection guarded by a lock; safe to share between threads.

    Every write goes through `_tx` (several statements: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception)
    or `_write` (one statement, atomic by itself); every read through `_read`. All three turn any sqlite3 error
    into a one-line `StoreError`, and none ever leaves the connection inside a transaction.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.path = root / DB_NAME
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store in {root}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        try:
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"the database {self.path} is unusable: {exc}") from None
        try:
            self._migrate()
        except StoreError:
            self._db.close()
            raise

    # ------------------------------------------------------------------ plumbing
    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"cannot {action} {self.path}: {exc}")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any exception.

        sqlite3 errors leave as `StoreError`; other exceptions (a caller's callback) pass through unchanged.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("write to", exc) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._error("write to", exc) from None
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        # SQLite has already rolled back by itself after some errors (disk full, I/O): then there is nothing to do
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("cannot roll back %s: %s", self.path, exc)

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement, in its own (autocommit) transaction."""
        with self._lock:
            try:
                return self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise self._error("write to", exc) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from None

    def _read_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = self._read(sql, params)
        return rows[0] if rows else None

    def _version(self) -> int:
        row = self._read_one("PRAGMA user_version")
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        version = self._version()
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the database {self.path} has schema {version}, newer than this asrbox ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._tx() as db:
                # another connection may have applied it since we looked: read again under the write lock
                if int(db.execute("PRAGMA user_version").fetchone()[0]) >= number:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")
            log.info("store schema migrated to version %d", number)

    def _reindex(self, record_id: str) -> None:
        row = self._db.execute("SELECT rowid, text, source FROM records WHERE id=?", (record_id,)).fetchone()
        if row is None:
            return
        self._db.execute("DELETE FROM records_fts WHERE rowid=?", (row["rowid"],))
        body = " ".join(x for x in (row["text"], Path(row["source"]).name if row["source"] else "") if x)
        if body:
            self._db.execute("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", (row["rowid"], index_text(body)))

    def close(self, checkpoint: bool = True) -> None:
        """Close the connection; `checkpoint` first folds the WAL back into the database file (waits for readers)."""
        with self._lock:
            if checkpoint:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def integrity_ok(self) -> bool:
        row = self._read_one("PRAGMA integrity_check")
        return row is not None and row[0] == "ok"

    # ------------------------------------------------------------------ writing
    def begin(
        self,
        kind: str,
        source: str | None = None,
        fingerprint: str | None = None,
        session_id: str | None = None,
        audio_path: str | None = None,
        started_at: str | None = None,
        ended_at: str | None = None,
        duration_s: float | None = None,
    ) -> str:
        """A pending record, written before any transcription work."""
        rid = str(uuid.uuid4())
        self._write(
            "INSERT INTO records (id, kind, status, source, source_fingerprint, session_id, created_at, "
            "started_at, ended_at, duration_s, audio_path) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, kind, source, fingerprint, session_id, utc_now(), started_at, ended_at, duration_s, audio_path),
        )
        return rid

    def finish(
        self,
        record_id: str,
        *,
        language: str,
        raw_text: str,
        text: str,
        segments: list[dict[str, Any]],
        engine: dict[str, Any],
        processing_s: float,
        duration_s: float | None = None,
        payload: Callable[[int], dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int | None:
        """Mark the record done. With `payload`, also queue its final in the outbox in the same transaction
        (the outbox key is the final's `seq`) and return that seq."""
        with self._tx() as db:
            db.execute(
                "UPDATE records SET status='done', language=?, raw_text=?, text=?, segments=?, engine=?, "
                "processing_s=?, duration_s=COALESCE(?, duration_s), error=NULL, meta=? WHERE id=?",
                (
                    language,
                    raw_text,
                    text,
                    json.dumps(segments, ensure_ascii=False),
                    json.dumps(engine),
                    round(processing_s, 3),
                    duration_s,
                    json.dumps(meta, ensure_ascii=False) if meta else None,
                    record_id,
                ),
            )
            self._reindex(record_id)
            return self._enqueue(db, record_id, payload) if payload is not None else None

    @staticmethod
    def _enqueue(db: sqlite3.Connection, record_id: str, payload: Callable[[int], dict[str, Any]]) -> int:
        """Inside the caller's transaction: the outbox row of a final; its AUTOINCREMENT key is the seq."""
        row = db.execute("SELECT speech_end_ts FROM records WHERE id=?", (record_id,)).fetchone()
        cur = db.execute(
            "INSERT INTO outbox (record_id, payload, speech_end_ts, created_at) VALUES (?, '', ?, ?)",
            (record_id, row[0] if row else None, utc_now()),
        )
        seq = int(cur.lastrowid or 0)
        db.execute("UPDATE outbox SET payload=? WHERE seq=?", (json.dumps(payload(seq), ensure_ascii=False), seq))
        return seq

    def begin_live(
        self,
        *,
        session_id: str | None,
        audio_path: str | None,
        started_at: str,
        ended_at: str,
        duration_s: float,
        speech_end_ts: float,
        record_id: str | None = None,
        audio_bytes: int | None = None,
    ) -> str:
        """The pending row of an utterance whose audio is already on disk."""
        rid = record_id or str(uuid.uuid4())
        self._write(
            "INSERT INTO records (id, kind, status, session_id, created_at, started_at, ended_at, duration_s, "
            "audio_path, speech_end_ts, audio_bytes) VALUES (?, 'live', 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rid,
                session_id,
                utc_now(),
                started_at,
                ended_at,
                round(duration_s, 3),
                audio_path,
                speech_end_ts,
                audio_bytes,
            ),
        )
        return rid

    def pending_live(self) -> list[Record]:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM records WHERE kind='live' AND status='pending' ORDER BY created_at, rowid"
        )
        return [_record(r) for r in rows]

    def claim_attempt(self, record_id: str, limit: int | None = None) -> int | None:
        """Count one more transcription attempt of the record, before it is made: the new count; 0 if there is no
        such record; None if it already had `limit` attempts (nothing counted). Committed on return, so an
        attempt that kills the process is counted too."""
        with self._tx() as db:
            row = db.execute("SELECT attempts FROM records WHERE id=?", (record_id,)).fetchone()
            if row is None:
                return 0
            if limit is not None and int(row[0]) >= limit:
                return None
            db.execute("UPDATE records SET attempts=attempts+1 WHERE id=?", (record_id,))
        return int(row[0]) + 1

    # ------------------------------------------------------------------ retention
    def archived_audio(self) -> list[tuple[str, str, int, str]]:
        """(id, audio_path, bytes, created_at) of archived live audio that is safe to delete (not pending)."""
        rows = self._read(
            "SELECT id, audio_path, COALESCE(audio_bytes, 0), created_at FROM records "
            "WHERE kind='live' AND audio_path IS NOT NULL AND status != 'pending' ORDER BY created_at, rowid"
        )
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    def archived_page(
        self, *, before: str | None = None, after: tuple[str, int] | None = None, limit: int = 500
    ) -> list[ArchivedAudio]:
        """The next `limit` archived audio files safe to delete (not pending), oldest first: created before
        `before` (if given), after the (created_at, rowid) key `after` (keyset paging: a row that could not be
        deleted is not returned again)."""
        where = ["kind='live'", "audio_path IS NOT NULL", "status != 'pending'"]
        params: list[Any] = []
        if before is not None:
            where.append("created_at < ?")
            params.append(before)
        if after is not None:
            where.append("(created_at, rowid) > (?, ?)")
            params += [after[0], after[1]]
        rows = self._read(
            "SELECT rowid, id, audio_path, COALESCE(audio_bytes, 0), created_at FROM records WHERE "
            + " AND ".join(where)
            + " ORDER BY created_at, rowid LIMIT ?",
            (*params, int(limit)),
        )
        return [ArchivedAudio(int(r[0]), r[1], r[2], int(r[3]), r[4]) for r in rows]

    def archived_bytes(self) -> int:
        row = self._read_one("SELECT COALESCE(SUM(audio_bytes), 0) FROM records WHERE audio_path IS NOT NULL")
        return int(row[0]) if row else 0

    def drop_audio(self, record_id: str, delete_record: bool) -> None:
        if delete_record:
            self.delete(record_id)
        else:
            self._write("UPDATE records SET audio_path=NULL, audio_bytes=NULL WHERE id=?", (record_id,))

    def drop_audio_many(self, record_ids: Sequence[str], delete_records: bool) -> int:
        """`drop_audio` for many records (never pending ones) in one transaction; how many rows changed.
        Keep `record_ids` to a few hundred (one statement parameter each)."""
        if not record_ids:
            return 0
        marks = ", ".join("?" * len(record_ids))
        match = f"id IN ({marks}) AND status != 'pending'"
        with self._tx() as db:
            if delete_records:
                return drop_records(db, match, record_ids)
            cur = db.execute(f"UPDATE records SET audio_path=NULL, audio_bytes=NULL WHERE {match}", record_ids)
            return int(cur.rowcount)

    # ------------------------------------------------------------------ outbox
    def unsent(self, limit: int = 100, after_seq: int = 0) -> list[tuple[int, dict[str, Any], float | None]]:
        """Unsent finals with seq > `after_seq`, in seq order: (seq, payload, speech_end_ts)."""
        rows = self._read(
            "SELECT seq, payload, speech_end_ts FROM outbox WHERE sent_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [(int(r[0]), json.loads(r[1]), r[2]) for r in rows]

    def mark_sent(self, seq: int) -> None:
        self._write("UPDATE outbox SET sent_at=? WHERE seq=?", (utc_now(), seq))

    def prune_outbox(self, sent_before: str) -> int:
        """Delete outbox rows sent before `sent_before` (an ISO time as `utc_now()` writes it); how many.
        Seqs stay gapless: AUTOINCREMENT never reuses a number, even once every row is gone."""
        cur = self._write("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (sent_before,))
        return int(cur.rowcount)

    def outbox_backlog(self) -> int:
        row = self._read_one("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ sessions
    def start_session(self, name: str | None) -> str:
        sid = str(uuid.uuid4())
        self._write("INSERT INTO sessions (id, name, started_at) VALUES (?, ?, ?)", (sid, name, utc_now()))
        return sid

    def end_session(self, session_id: str, summary: dict[str, Any]) -> dict[str, Any]:
        ended = utc_now()
        self._write(
            "UPDATE sessions SET ended_at=?, summary=? WHERE id=?",
            (ended, json.dumps(summary, ensure_ascii=False), session_id),
        )
        return self.session(session_id) or {}

    # ------------------------------------------------------------------ pronunciation attempts
    def add_attempt(
        self, result: dict[str, Any], learner: str | None, session_id: str | None, record_id: str | None
    ) -> int:
        cur = self._write(
            "INSERT INTO attempts (created_at, record_id, session_id, learner, language, target, heard, score, items)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                utc_now(),
                record_id,
                session_id,
                learner,
                result["language"],
                result["target"],
                result["heard"],
                result["score"],
                json.dumps(result["items"], ensure_ascii=False),
            ),
        )
        return int(cur.lastrowid or 0)

    def attempts(self, learner: str | None = None, session_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM attempts WHERE 1=1"
        args: list[str] = []
        if learner is not None:
            sql, args = sql + " AND learner=?", [*args, learner]
        if session_id is not None:
            sql, args = sql + " AND session_id LIKE ?", [*args, session_id + "%"]
        rows = self._read(sql + " ORDER BY id", args)
        return [{**dict(r), "items": json.loads(r["items"])} for r in rows]

    def session(self, session_id: str) -> dict[str, Any] | None:
        row = self._read_one(
            "SELECT id, name, started_at, ended_at, summary FROM sessions WHERE id=? OR id LIKE ? "
            "ORDER BY started_at DESC LIMIT 1",
            (session_id, session_id + "%"),
        )
        if row is None:
            return None
        d = dict(row)
        d["summary"] = json.loads(d["summary"]) if d["summary"] else {}
        return d

    def session_stats(self, session_id: str) -> dict[str, Any]:
        (row,) = self._read(  # an aggregate: always exactly one row
            "SELECT COUNT(*), COALESCE(SUM(duration_s), 0), SUM(status='pending'), "
            "GROUP_CONCAT(DISTINCT language) FROM records WHERE session_id=?",
            (session_id,),
        )
        return {
            "utterances": int(row[0]),
            "speech_s": round(float(row[1]), 2),
            "pending": int(row[2] or 0),
            "languages": sorted(x for x in (row[3] or "").split(",") if x),
        }

    # ------------------------------------------------------------------ record lifecycle
    def fail(self, record_id: str, error: str) -> None:
        """Status 'failed' with its reason; the audio file stays on disk."""
        self._write("UPDATE records SET status='failed', error=? WHERE id=?", (error, record_id))

    def delete(self, record_id: str) -> bool:
        with self._tx() as db:
            return drop_records(db, "id=?", (record_id,)) > 0

    # ------------------------------------------------------------------ reading
    def get(self, record_id: str) -> Record | None:
        row = self._read_one(f"SELECT {_COLUMNS} FROM records WHERE id=?", (record_id,))
        if row is None and len(record_id) >= 4:  # a unique prefix, as shown by `history list`
            rows = self._read(f"SELECT {_COLUMNS} FROM records WHERE id LIKE ? LIMIT 2", (record_id + "%",))
            row = rows[0] if len(rows) == 1 else None
        return _record(row) if row else None

    def find_done(self, source: str, fingerprint: str) -> Record | None:
        row = self._read_one(
            f"SELECT {_COLUMNS} FROM records WHERE source=? AND source_fingerprint=? AND status='done' "
            "ORDER BY created_at DESC LIMIT 1",
            (source, fingerprint),
        )
        return _record(row) if row else None

    def query(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        search: str | None = None,
        session_id: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[Record]:
        where, params = [], []
        if since:
            where.append("r.created_at >= ?")
            params.append(since)
        if until:
            where.append("r.created_at < ?")
            params.append(until)
        if session_id:
            where.append("r.session_id = ?")
            params.append(session_id)
        join = ""
        if search is not None:
            q = fts_query(search)
            if not q:
                return []
            join = "JOIN records_fts f ON f.rowid = r.rowid"
            where.append("records_fts MATCH ?")
            params.append(q)
        sql = f"SELECT {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))} FROM records r {join}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY r.created_at {'DESC' if newest_first else 'ASC'}, r.rowid"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_record(r) for r in self._read(sql, params)]

    def iter_all(self, **kwargs: Any) -> Iterator[Record]:
        yield from self.query(newest_first=False, **kwargs)
