"""Retention on a real SQLite file with 3,000 archived utterances and their WAV files."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from daemon.settings import StoreSettings
from daemon.store import retention as retention_mod
from daemon.store.audio import fsync_dir, write_wav_atomic
from daemon.store.db import Store, index_text, iso
from daemon.store.retention import BATCH, Retention

N = 3000
BASE = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)  # 144 utterances a day: 21 day folders


@dataclass(frozen=True)
class Archive:
    root: Path
    ids: list[str]
    paths: list[Path]
    pending: set[int]
    size: int


def _is_pending(i: int) -> bool:
    return i % 30 == 7  # 100 of 3,000, spread over the whole range


@pytest.fixture()
def archive(tmp_path: Path) -> Archive:
    """3,000 live records (every 30th still pending), each with a real WAV in its day folder.

    Rows go in with one transaction from a second connection (3,000 single commits would take ~30 s);
    the files are written plainly, then the folders synced once."""
    Store(tmp_path).close()
    wav = tmp_path / "template.wav"
    size = write_wav_atomic(wav, np.full(800, 0.1, dtype=np.float32))
    data = wav.read_bytes()
    ids, paths, rows = [], [], []
    for i in range(N):
        created = BASE + i * STEP
        rid = f"rec-{i:05d}"
        rel = f"audio/{created:%Y/%m/%d}/{rid}.wav"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
        status = "pending" if _is_pending(i) else "done"
        rows.append((rid, status, iso(created), rel, size, None if status == "pending" else f"会议 第{i}条"))
        ids.append(rid)
        paths.append(tmp_path / rel)
    db = sqlite3.connect(tmp_path / "asrbox.db")
    with db:
        db.executemany(
            "INSERT INTO records (id, kind, status, created_at, audio_path, audio_bytes, text) "
            "VALUES (?, 'live', ?, ?, ?, ?, ?)",
            rows,
        )
        texts = db.execute("SELECT rowid, text FROM records WHERE text IS NOT NULL").fetchall()
        db.executemany("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", [(r, index_text(t)) for r, t in texts])
    db.close()
    return Archive(tmp_path, ids, paths, {i for i in range(N) if _is_pending(i)}, size)


@pytest.fixture()
def spies(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[Path]]:
    """Record the size of each batch written and each folder synced."""
    batches: list[int] = []
    synced: list[Path] = []
    drop = Store.drop_audio_many

    def drop_spy(self: Store, ids: Sequence[str], delete_records: bool) -> int:
        batches.append(len(ids))
        return drop(self, ids, delete_records)

    def fsync_spy(folder: Path) -> bool:
        synced.append(folder)
        return fsync_dir(folder)

    monkeypatch.setattr(Store, "drop_audio_many", drop_spy)
    monkeypatch.setattr(retention_mod, "fsync_dir", fsync_spy)
    return batches, synced


def _timed(retention: Retention, now: datetime | None = None) -> retention_mod.DiskStatus:
    t0 = time.perf_counter()
    status = retention.run(now)
    print(f"\nretention: {status.deleted_files} files of {N} in {time.perf_counter() - t0:.3f} s")
    return status


def test_age_deletes_oldest_in_batches_never_pending(archive: Archive, spies: tuple[list[int], list[Path]]) -> None:
    batches, synced = spies
    store = Store(archive.root)
    settings = StoreSettings(path=archive.root, retention_days=20, min_free_mb=0)
    status = _timed(Retention(store, settings), now=BASE + timedelta(days=30))
    # cutoff = BASE + 10 days: utterances 0..1439 are older, less the pending ones among them
    doomed = {i for i in range(1440) if i not in archive.pending}
    assert status.deleted_files == len(doomed) == 1392 and status.deleted_bytes == 1392 * archive.size
    assert batches == [BATCH, BATCH, 392]
    folders = {archive.paths[i].parent for i in doomed}
    assert set(synced) == folders and len(synced) <= len(folders) + len(batches) - 1  # once per folder and batch
    for i, rid in enumerate(archive.ids):
        r = store.get(rid)
        assert r is not None  # records (texts) are kept
        assert archive.paths[i].is_file() is (i not in doomed)
        assert (r.audio_path is None) is (i in doomed)
        if i in archive.pending:
            assert r.status == "pending" and r.audio_path
    assert Retention(store, settings).run(BASE + timedelta(days=30)).deleted_files == 0  # nothing left to do


def test_quota_deletes_oldest_and_prunes_records(archive: Archive, spies: tuple[list[int], list[Path]]) -> None:
    batches, _ = spies
    store = Store(archive.root)
    quota = 1000 * archive.size + archive.size // 2  # 3,000 files, room for 1,000
    settings = StoreSettings(path=archive.root, max_audio_gb=quota / 1024**3, prune_records=True, min_free_mb=0)
    status = _timed(Retention(store, settings))
    doomed = [i for i in range(N) if i not in archive.pending][:2000]  # oldest first, pending skipped
    assert status.deleted_files == 2000 and batches == [BATCH] * 4
    assert store.archived_bytes() <= quota < store.archived_bytes() + archive.size  # not one file too many
    gone = set(doomed)
    for i, rid in enumerate(archive.ids):
        assert (store.get(rid) is None) is (i in gone)
        assert archive.paths[i].is_file() is (i not in gone)
    assert len(store.query(search="会议")) == N - len(archive.pending) - 2000  # their search entries went too
    assert store.integrity_ok()


def test_file_that_cannot_be_deleted_is_skipped(archive: Archive) -> None:
    store = Store(archive.root)
    blocked = archive.paths[0]
    blocked.unlink()
    blocked.mkdir()  # a folder where the file was: unlink fails (IsADirectoryError)
    settings = StoreSettings(path=archive.root, max_audio_gb=(N - 11) * archive.size / 1024**3, min_free_mb=0)
    status = Retention(store, settings).run()
    # 11 files over quota: the oldest (0..12 less pending 7) are tried, 0 stays, so one more (12) goes instead
    assert status.deleted_files == 11 and status.deleted_bytes == 11 * archive.size
    assert store.get(archive.ids[0]).audio_path  # type: ignore[union-attr]  # still recorded: its file is there
    assert [store.get(archive.ids[i]).audio_path is None for i in (1, 7, 11, 12, 13)] == [  # type: ignore[union-attr]
        True,
        False,
        True,
        True,
        False,
    ]


def _in_thread(retention: Retention, now: datetime) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def work() -> None:
        try:
            result.append(retention.run(now))
        except BaseException as exc:  # reported by the caller's assertion
            result.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    return worker, result


def test_runs_on_its_own_connection(archive: Archive) -> None:
    """While the caller's Store is held by its thread for the whole run, retention still finishes:
    it shares no connection (nor lock) with it."""
    store = Store(archive.root)
    settings = StoreSettings(path=archive.root, retention_days=20, min_free_mb=0)
    with store._lock:
        worker, result = _in_thread(Retention(store, settings), BASE + timedelta(days=30))
        worker.join(timeout=120)
        assert not worker.is_alive(), "retention is waiting for the caller's connection"
    assert len(result) == 1 and isinstance(result[0], retention_mod.DiskStatus), result
    assert result[0].deleted_files == 1392


def test_waits_for_the_callers_write_transaction(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon is mid-transaction when retention comes to write its first batch: retention waits its turn
    (busy_timeout) instead of failing with "database is locked", and the daemon's rows are all there."""
    store = Store(archive.root)
    settings = StoreSettings(path=archive.root, retention_days=20, min_free_mb=0)
    about_to_write = threading.Event()
    drop = Store.drop_audio_many

    def drop_spy(self: Store, ids: Sequence[str], delete_records: bool) -> int:
        about_to_write.set()
        return drop(self, ids, delete_records)

    monkeypatch.setattr(Store, "drop_audio_many", drop_spy)
    with store._tx() as db:
        worker, result = _in_thread(Retention(store, settings), BASE + timedelta(days=30))
        assert about_to_write.wait(timeout=60)
        for i in range(200):
            db.execute(
                "INSERT INTO records (id, kind, status, created_at) VALUES (?, 'live', 'pending', ?)",
                (f"new-{i}", iso(datetime.now(UTC))),
            )
    worker.join(timeout=120)
    assert not worker.is_alive() and len(result) == 1
    assert isinstance(result[0], retention_mod.DiskStatus), result
    assert result[0].deleted_files == 1392 and len(store.pending_live()) == len(archive.pending) + 200


def _payload(seq: int) -> dict[str, int]:
    return {"seq": seq}


def test_outbox_pruned_a_day_after_delivery(tmp_path: Path) -> None:
    store = Store(tmp_path)
    seqs = []
    for i in range(3):
        rid = store.begin("file", source=f"/{i}.wav")
        seqs.append(
            store.finish(
                rid, language="en", raw_text="a", text="a", segments=[], engine={}, processing_s=0, payload=_payload
            )
        )
    store.mark_sent(1)
    store.mark_sent(2)
    settings = StoreSettings(path=tmp_path, min_free_mb=0)
    Retention(store, settings).run()
    assert store._read_one("SELECT COUNT(*) FROM outbox")[0] == 3  # type: ignore[index]  # sent just now: kept
    Retention(store, settings).run(datetime.now(UTC) + timedelta(days=1, minutes=1))
    assert [seq for seq, _, _ in store.unsent()] == [3]
    assert store._read_one("SELECT COUNT(*) FROM outbox")[0] == 1  # type: ignore[index]
    rid = store.begin("file", source="/4.wav")
    assert (
        store.finish(
            rid, language="en", raw_text="a", text="a", segments=[], engine={}, processing_s=0, payload=_payload
        )
        == 4
    )
