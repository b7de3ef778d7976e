"""Durable transcription jobs in SQLite (tables `jobs` and `job_files`, migration 7).

A file's outcome is recorded in one transaction with its `job_files` row (`complete_file`): after a crash a
file is either recorded and done, or not recorded and queued again, never both. All calls are the loop's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.batch.transcribe import Outcome
from daemon.store.db import Store, drop_records, utc_now
from daemon.store.records import write_file

JOB_FIELDS = "id, name, created_at, finished_at, status, options"
FILE_FIELDS = "idx, name, bytes, status, progress, duration_s, record_id, error"
OPEN = ("held", "queued", "running")  # a job still to finish


@dataclass(frozen=True)
class NewFile:
    """A file received for a job: its display name, its path relative to the store, its size."""

    name: str
    path: str
    bytes: int
    duration_s: float | None = None


@dataclass(frozen=True)
class Work:
    """The next file to transcribe."""

    job_id: str
    idx: int
    name: str
    path: str
    options: dict[str, Any]
    duration_s: float | None


class JobStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ writing
    def create(
        self, job_id: str, name: str | None, options: dict[str, Any], files: Sequence[NewFile], held: bool
    ) -> None:
        with self.store._tx() as db:
            db.execute(
                f"INSERT INTO jobs ({JOB_FIELDS}) VALUES (?, ?, ?, NULL, ?, ?)",
                (job_id, name, utc_now(), "held" if held else "queued", json.dumps(options, ensure_ascii=False)),
            )
            self._insert_files(db, job_id, 0, files)

    def add_files(self, job_id: str, files: Sequence[NewFile]) -> list[int]:
        """Append files (indexes follow the last one); a finished job is queued again."""
        with self.store._tx() as db:
            row = db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM job_files WHERE job_id=?", (job_id,)).fetchone()
            first = int(row[0])
            self._insert_files(db, job_id, first, files)
            db.execute(
                "UPDATE jobs SET status='queued', finished_at=NULL WHERE id=? AND status IN ('done', 'failed')",
                (job_id,),
            )
        return list(range(first, first + len(files)))

    @staticmethod
    def _insert_files(db: sqlite3.Connection, job_id: str, first: int, files: Sequence[NewFile]) -> None:
        db.executemany(
            "INSERT INTO job_files (job_id, idx, name, path, bytes, status, duration_s) VALUES (?, ?, ?, ?, ?, "
            "'queued', ?)",
            [(job_id, first + i, f.name, f.path, f.bytes, f.duration_s) for i, f in enumerate(files)],
        )

    def next_index(self, job_id: str) -> int:
        row = self.store._read_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM job_files WHERE job_id=?", (job_id,))
        return int(row[0]) if row else 0

    def start(self, job_id: str) -> bool:
        """A held job is queued; False when it was not held."""
        cur = self.store._write("UPDATE jobs SET status='queued' WHERE id=? AND status='held'", (job_id,))
        return cur.rowcount > 0

    def resume(self) -> int:
        """After a restart: files left running go back to the queue, and so do their jobs."""
        with self.store._tx() as db:
            n = db.execute("UPDATE job_files SET status='queued', progress=0 WHERE status='running'").rowcount
            db.execute("UPDATE jobs SET status='queued' WHERE status='running'")
        return int(n)

    def take(self, limit: int) -> list[Work]:
        """The next queued files (up to `limit`, in order) of the oldest queued or running job, marked running
        (with their job): files of one job share its options, so they can share the engine's batches."""
        with self.store._tx() as db:
            first = db.execute(
                "SELECT f.job_id FROM job_files f JOIN jobs j ON j.id = f.job_id "
                "WHERE f.status='queued' AND j.status IN ('queued', 'running') "
                "ORDER BY j.created_at, j.rowid, f.idx LIMIT 1"
            ).fetchone()
            if first is None:
                return []
            job_id = first[0]
            rows = db.execute(
                "SELECT f.idx, f.name, f.path, f.duration_s, j.options FROM job_files f JOIN jobs j ON j.id = f.job_id "
                "WHERE f.job_id=? AND f.status='queued' ORDER BY f.idx LIMIT ?",
                (job_id, max(1, limit)),
            ).fetchall()
            db.executemany(
                "UPDATE job_files SET status='running' WHERE job_id=? AND idx=?", [(job_id, r[0]) for r in rows]
            )
            db.execute("UPDATE jobs SET status='running' WHERE id=?", (job_id,))
        return [Work(job_id, int(r[0]), r[1], r[2], json.loads(r[4]), r[3]) for r in rows]

    def progress(self, job_id: str, idx: int, value: float) -> None:
        self.store._write(
            "UPDATE job_files SET progress=? WHERE job_id=? AND idx=? AND status='running'",
            (round(value, 3), job_id, idx),
        )

    def requeue(self, job_id: str, idx: int) -> None:
        """The file in hand at shutdown: back in the queue, nothing recorded."""
        self.store._write(
            "UPDATE job_files SET status='queued', progress=0 WHERE job_id=? AND idx=? AND status='running'",
            (job_id, idx),
        )

    def complete_file(self, work: Work, outcome: Outcome) -> str | None:
        """Record a file's outcome and mark its row done/failed in one transaction; the record id (None when the
        file is no longer running: cancelled or deleted meanwhile, then nothing is recorded)."""
        with self.store._tx() as db:
            row = db.execute(
                "SELECT status FROM job_files WHERE job_id=? AND idx=?", (work.job_id, work.idx)
            ).fetchone()
            if row is None or row[0] != "running":
                return None
            rid = write_file(self.store, db, outcome, work.name, work.path)  # as every file path records one
            t = outcome.transcript
            db.execute(
                "UPDATE job_files SET status=?, progress=?, duration_s=COALESCE(?, duration_s), record_id=?, error=? "
                "WHERE job_id=? AND idx=?",
                (
                    "done" if t is not None else "failed",
                    1.0 if t is not None else 0.0,
                    round(t.duration_s, 3) if t is not None else None,
                    rid,
                    None if t is not None else (outcome.error or "no transcript"),
                    work.job_id,
                    work.idx,
                ),
            )
            _settle(db, work.job_id)
        return rid

    def cancel(self, job_id: str) -> bool:
        """Queued and running files are cancelled (the running one stops after its current window); False when
        the job had nothing left to cancel."""
        with self.store._tx() as db:
            n = db.execute(
                "UPDATE job_files SET status='cancelled' WHERE job_id=? AND status IN ('queued', 'running')",
                (job_id,),
            ).rowcount
            m = db.execute(
                "UPDATE jobs SET status='cancelled', finished_at=? WHERE id=? AND status IN ('held', 'queued', "
                "'running')",
                (utc_now(), job_id),
            ).rowcount
        return bool(n or m)

    def delete(self, job_id: str) -> list[str]:
        """The job, its files' rows and their records; the upload paths (relative to the store) to remove."""
        with self.store._tx() as db:
            rows = db.execute("SELECT path, record_id FROM job_files WHERE job_id=?", (job_id,)).fetchall()
            for r in rows:
                if r[1]:
                    drop_records(db, "id=?", (r[1],))
            db.execute("DELETE FROM job_files WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ reading
    def get(self, job_id: str) -> dict[str, Any] | None:
        row = self.store._read_one(f"SELECT {JOB_FIELDS} FROM jobs WHERE id=?", (job_id,))
        if row is None:
            return None
        job = _job(row)
        files = self.store._read(f"SELECT {FILE_FIELDS} FROM job_files WHERE job_id=? ORDER BY idx", (job_id,))
        job["files"] = [dict(f) for f in files]
        job.update(_tally(job["files"]))
        return job

    def page(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the cursor is the last job's (created_at, id)."""
        where = ""
        params: list[Any] = [limit + 1]
        if cursor:
            at, _, jid = cursor.partition("|")
            where = "WHERE (created_at, id) < (?, ?)"
            params = [at, jid, limit + 1]
        rows = self.store._read(
            f"SELECT {JOB_FIELDS} FROM jobs {where} ORDER BY created_at DESC, id DESC LIMIT ?", params
        )
        jobs = [_job(r) for r in rows[:limit]]
        counts = self._counts([j["id"] for j in jobs])
        for j in jobs:
            j.update(counts.get(j["id"], _tally([])))
        nxt = f"{jobs[-1]['created_at']}|{jobs[-1]['id']}" if len(rows) > limit else None
        return jobs, nxt

    def _counts(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.store._read(
            f"SELECT job_id, status, COUNT(*) FROM job_files WHERE job_id IN ({marks}) GROUP BY job_id, status", ids
        )
        out: dict[str, dict[str, Any]] = {}
        for job_id, status, n in rows:
            t = out.setdefault(job_id, _tally([]))
            t["files_total"] += n
            if status in ("done", "failed", "cancelled"):
                t["files_done"] += n
            if status == "failed":
                t["files_failed"] += n
        return out

    def file(self, job_id: str, idx: int, public: bool = False) -> dict[str, Any] | None:
        """One file's row; with its stored path unless `public`."""
        extra = "" if public else ", path"
        row = self.store._read_one(
            f"SELECT {FILE_FIELDS}{extra} FROM job_files WHERE job_id=? AND idx=?", (job_id, idx)
        )
        return dict(row) if row is not None else None

    def summary(self, job_id: str) -> dict[str, Any] | None:
        """A job's status and file counts."""
        status = self.status(job_id)
        if status is None:
            return None
        return {"status": status, **self._counts([job_id]).get(job_id, _tally([]))}

    def files_of(self, job_id: str) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.store._read(
                f"SELECT {FILE_FIELDS}, path FROM job_files WHERE job_id=? ORDER BY idx", (job_id,)
            )
        ]

    def status(self, job_id: str) -> str | None:
        row = self.store._read_one("SELECT status FROM jobs WHERE id=?", (job_id,))
        return str(row[0]) if row is not None else None

    def file_status(self, job_id: str, idx: int) -> str | None:
        row = self.store._read_one("SELECT status FROM job_files WHERE job_id=? AND idx=?", (job_id, idx))
        return str(row[0]) if row is not None else None


def _job(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["options"] = json.loads(d["options"]) if d["options"] else {}
    return d


def _tally(files: list[dict[str, Any]]) -> dict[str, Any]:
    done = sum(1 for f in files if f["status"] in ("done", "failed", "cancelled"))
    failed = sum(1 for f in files if f["status"] == "failed")
    return {"files_total": len(files), "files_done": done, "files_failed": failed}


def _settle(db: sqlite3.Connection, job_id: str) -> None:
    """Inside a transaction: a job with no file left to do is done (failed when every file failed)."""
    rows = dict(db.execute("SELECT status, COUNT(*) FROM job_files WHERE job_id=? GROUP BY status", (job_id,)))
    if rows.get("queued") or rows.get("running"):
        return
    status = "failed" if rows.get("failed") and not rows.get("done") else "done"
    db.execute(
        "UPDATE jobs SET status=?, finished_at=? WHERE id=? AND status IN ('queued', 'running')",
        (status, utc_now(), job_id),
    )
