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
from typing import Any

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
)

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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = (
    "id, kind, status, source, session_id, created_at, started_at, ended_at, duration_s, language, "
    "raw_text, text, segments, engine, processing_s, audio_path, error, meta"
)


def _record(row: sqlite3.Row) -> Record:
    d = dict(row)
    d["segments"] = json.loads(d["segments"]) if d["segments"] else []
    d["engine"] = json.loads(d["engine"]) if d["engine"] else {}
    d["meta"] = json.loads(d["meta"]) if d["meta"] else {}
    return Record(**d)


class Store:
    """One connection guarded by a lock; safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.path = root / DB_NAME
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store in {root}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the database {self.path} is unusable: {exc}") from None

    # ------------------------------------------------------------------ plumbing
    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the database {self.path} has schema {version}, newer than this asrbox ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in script.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            log.info("store schema migrated to version %d", number)

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot write to {self.path}: {exc}") from None

    def _reindex(self, record_id: str) -> None:
        row = self._db.execute("SELECT rowid, text, source FROM records WHERE id=?", (record_id,)).fetchone()
        if row is None:
            return
        self._db.execute("DELETE FROM records_fts WHERE rowid=?", (row["rowid"],))
        body = " ".join(x for x in (row["text"], Path(row["source"]).name if row["source"] else "") if x)
        if body:
            self._db.execute("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", (row["rowid"], index_text(body)))

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def integrity_ok(self) -> bool:
        with self._lock:
            return bool(self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

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
        with self._lock:
            self._write(
                "INSERT INTO records (id, kind, status, source, source_fingerprint, session_id, created_at, "
                "started_at, ended_at, duration_s, audio_path) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    kind,
                    source,
                    fingerprint,
                    session_id,
                    utc_now(),
                    started_at,
                    ended_at,
                    duration_s,
                    audio_path,
                ),
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
        seq: int | None = None
        with self._lock:
            self._write("BEGIN IMMEDIATE")
            try:
                self._db.execute(
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
                if payload is not None:
                    ts = self._db.execute("SELECT speech_end_ts FROM records WHERE id=?", (record_id,)).fetchone()[0]
                    cur = self._db.execute(
                        "INSERT INTO outbox (record_id, payload, speech_end_ts, created_at) VALUES (?, '', ?, ?)",
                        (record_id, ts, utc_now()),
                    )
                    seq = int(cur.lastrowid or 0)
                    body = json.dumps(payload(seq), ensure_ascii=False)
                    self._db.execute("UPDATE outbox SET payload=? WHERE seq=?", (body, seq))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
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
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE kind='live' AND status='pending' ORDER BY created_at, rowid"
            ).fetchall()
        return [_record(r) for r in rows]

    # ------------------------------------------------------------------ retention
    def archived_audio(self) -> list[tuple[str, str, int, str]]:
        """(id, audio_path, bytes, created_at) of archived live audio that is safe to delete (not pending)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, audio_path, COALESCE(audio_bytes, 0), created_at FROM records "
                "WHERE kind='live' AND audio_path IS NOT NULL AND status != 'pending' ORDER BY created_at, rowid"
            ).fetchall()
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    def archived_bytes(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(audio_bytes), 0) FROM records WHERE audio_path IS NOT NULL"
            ).fetchone()
        return int(row[0])

    def drop_audio(self, record_id: str, delete_record: bool) -> None:
        if delete_record:
            self.delete(record_id)
        else:
            self._write("UPDATE records SET audio_path=NULL, audio_bytes=NULL WHERE id=?", (record_id,))

    def unsent(self, limit: int = 100) -> list[tuple[int, dict[str, Any], float | None]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload, speech_end_ts FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [(int(r[0]), json.loads(r[1]), r[2]) for r in rows]

    def mark_sent(self, seq: int) -> None:
        self._write("UPDATE outbox SET sent_at=? WHERE seq=?", (utc_now(), seq))

    def outbox_backlog(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0])

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
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [{**dict(r), "items": json.loads(r["items"])} for r in rows]

    def session(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, started_at, ended_at, summary FROM sessions WHERE id=? OR id LIKE ? "
                "ORDER BY started_at DESC LIMIT 1",
                (session_id, session_id + "%"),
            ).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["summary"] = json.loads(d["summary"]) if d["summary"] else {}
        return d

    def session_stats(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(duration_s), 0), SUM(status='pending'), "
                "GROUP_CONCAT(DISTINCT language) FROM records WHERE session_id=?",
                (session_id,),
            ).fetchone()
        return {
            "utterances": int(row[0]),
            "speech_s": round(float(row[1]), 2),
            "pending": int(row[2] or 0),
            "languages": sorted(x for x in (row[3] or "").split(",") if x),
        }

    def fail(self, record_id: str, error: str) -> None:
        self._write("UPDATE records SET status='failed', error=? WHERE id=?", (error, record_id))

    def delete(self, record_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT rowid FROM records WHERE id=?", (record_id,)).fetchone()
            if row is None:
                return False
            self._write("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM records_fts WHERE rowid=?", (row["rowid"],))
            self._db.execute("DELETE FROM records WHERE id=?", (record_id,))
            self._db.execute("COMMIT")
            return True

    # ------------------------------------------------------------------ reading
    def get(self, record_id: str) -> Record | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM records WHERE id=?", (record_id,)).fetchone()
            if row is None and len(record_id) >= 4:  # a unique prefix, as shown by `history list`
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE id LIKE ? LIMIT 2", (record_id + "%",)
                ).fetchall()
                row = rows[0] if len(rows) == 1 else None
        return _record(row) if row else None

    def find_done(self, source: str, fingerprint: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE source=? AND source_fingerprint=? AND status='done' "
                "ORDER BY created_at DESC LIMIT 1",
                (source, fingerprint),
            ).fetchone()
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
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_record(r) for r in rows]

    def iter_all(self, **kwargs: Any) -> Iterator[Record]:
        yield from self.query(newest_first=False, **kwargs)
