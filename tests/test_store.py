from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daemon.errors import StoreError
from daemon.store.db import MIGRATIONS, Store, fts_query, index_text


def add(store: Store, text: str, source: str = "/a/b.wav", language: str = "zh") -> str:
    rid = store.begin("file", source=source, fingerprint="1:2")
    store.finish(
        rid,
        language=language,
        raw_text=text,
        text=text,
        segments=[{"start": 0, "end": 1, "text": text}],
        engine={"name": "whisper"},
        processing_s=0.5,
        duration_s=1.0,
    )
    return rid


def test_schema_wal_and_version(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.close()
    db = sqlite3.connect(tmp_path / "asrbox.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_pending_then_done_round_trip(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = s.begin("file", source="/x.wav", fingerprint="9:9")
    assert s.get(rid).status == "pending"  # type: ignore[union-attr]
    s.finish(
        rid,
        language="en",
        raw_text="hello",
        text="Hello.",
        segments=[],
        engine={"model": "m"},
        processing_s=1.234567,
        duration_s=2.5,
    )
    r = s.get(rid)
    assert r is not None and r.status == "done" and r.text == "Hello." and r.raw_text == "hello"
    assert r.engine == {"model": "m"} and r.processing_s == 1.235 and r.duration_s == 2.5
    assert s.find_done("/x.wav", "9:9") is not None and s.find_done("/x.wav", "0:0") is None
    assert s.get(rid[:8]) == r  # unique prefix


def test_failed_kept_with_error(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = s.begin("file", source="/bad.wav")
    s.fail(rid, "bad.wav: empty file")
    assert s.get(rid).status == "failed" and "empty" in s.get(rid).error  # type: ignore[union-attr,operator]


def test_chinese_full_text_search_any_substring(tmp_path: Path) -> None:
    s = Store(tmp_path)
    a = add(s, "我们下午用钉钉开会讨论通义千问")
    add(s, "今天天气很好")
    add(s, "Meeting about the quarterly budget", language="en")
    assert [r.id for r in s.query(search="钉钉")] == [a]
    assert [r.id for r in s.query(search="通义")] == [a]
    assert [r.id for r in s.query(search="下午 千问")] == [a]
    assert len(s.query(search="天气")) == 1
    assert len(s.query(search="quarterly")) == 1
    assert len(s.query(search="QUARTERLY budget")) == 1
    assert s.query(search="钉 钉钉 不存在") == []
    quoted = add(s, 'he said "hi" twice', language="en")
    assert s.query(search='"') == []  # quotes are escaped, no FTS syntax error, and match nothing
    assert [r.id for r in s.query(search='"hi"')] == [quoted]
    assert s.query(search="b.wav")  # file name is searchable


def test_fts_query_escaping() -> None:
    assert fts_query('say "hi"') == '"say" AND """hi"""'
    assert index_text("用钉钉") == " 用  钉  钉 "


def test_delete_removes_from_search(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = add(s, "钉钉会议")
    assert s.delete(rid) and s.get(rid) is None
    assert s.query(search="钉钉") == [] and not s.delete(rid)


def test_since_until_and_order(tmp_path: Path) -> None:
    s = Store(tmp_path)
    ids = [add(s, f"第{i}条") for i in range(3)]
    recs = list(s.iter_all())
    assert [r.id for r in recs] == ids
    assert s.query(since="2999-01-01T00:00:00Z") == []
    assert len(s.query(until="2999-01-01T00:00:00Z")) == 3


def test_newer_schema_refused(tmp_path: Path) -> None:
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "asrbox.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path)


def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "asrbox.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="unusable"):
        Store(tmp_path)


def test_reopen_keeps_data_and_integrity(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = add(s, "保留")
    s.close()
    s2 = Store(tmp_path)
    assert s2.get(rid) is not None and s2.integrity_ok()


def _live(store: Store, n: int, size: int = 32000) -> list[str]:
    import numpy as np

    from daemon.store.audio import write_wav_atomic

    ids = []
    for i in range(n):
        rel = f"audio/2026/01/0{i}/{i}.wav"
        written = write_wav_atomic(store.root / rel, np.zeros(size, dtype=np.float32))
        rid = store.begin_live(
            session_id=None,
            audio_path=rel,
            started_at="",
            ended_at="",
            duration_s=1.0,
            speech_end_ts=0.0,
            audio_bytes=written,
        )
        ids.append(rid)
    return ids


def _done(store: Store, rid: str) -> None:
    store.finish(rid, language="en", raw_text="x", text="x", segments=[], engine={}, processing_s=0.1)


def test_retention_by_age_keeps_pending_and_records(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from daemon.settings import StoreSettings
    from daemon.store.retention import Retention

    s = Store(tmp_path)
    ids = _live(s, 3)
    for rid in ids[:2]:
        _done(s, rid)
    later = datetime.now(UTC) + timedelta(days=31)
    status = Retention(s, StoreSettings(path=tmp_path, retention_days=30, min_free_mb=0)).run(later)
    assert status.deleted_files == 2 and not status.low
    assert [s.get(r).audio_path for r in ids[:2]] == [None, None]  # type: ignore[union-attr]
    assert s.get(ids[2]).audio_path and (tmp_path / s.get(ids[2]).audio_path).is_file()  # type: ignore[union-attr,operator]
    assert all(s.get(r) is not None for r in ids)  # texts kept
    # nothing new to delete a second time
    assert Retention(s, StoreSettings(path=tmp_path, retention_days=30, min_free_mb=0)).run(later).deleted_files == 0


def test_retention_by_quota_oldest_first_and_prune(tmp_path: Path) -> None:
    from daemon.settings import StoreSettings
    from daemon.store.retention import Retention

    s = Store(tmp_path)
    ids = _live(s, 4, size=16000 * 10)  # ~320 kB each
    for rid in ids:
        _done(s, rid)
    quota_gb = 700_000 / 1024**3  # room for two files
    st = Retention(s, StoreSettings(path=tmp_path, max_audio_gb=quota_gb, prune_records=True, min_free_mb=0)).run()
    assert st.deleted_files == 2
    assert s.get(ids[0]) is None and s.get(ids[1]) is None  # pruned with their audio
    assert s.get(ids[2]) is not None and s.get(ids[3]) is not None
    assert s.archived_bytes() <= 700_000


def test_low_disk_reported(tmp_path: Path) -> None:
    from daemon.settings import StoreSettings
    from daemon.store.retention import Retention

    s = Store(tmp_path)
    st = Retention(s, StoreSettings(path=tmp_path, min_free_mb=10**9)).run()
    assert st.low and st.free_mb >= 0


# ---------------------------------------------------------------------- transactions and errors
def _trigger(store: Store, sql: str) -> None:
    """A trigger made by another connection (as another process could): the store's own statement then fails."""
    db = sqlite3.connect(store.path)
    db.execute(sql)
    db.commit()
    db.close()


def _payload(seq: int) -> dict[str, object]:
    return {"seq": seq}


def test_failed_delete_rolls_back_and_store_stays_writable(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = add(s, "钉钉会议")
    _trigger(s, "CREATE TRIGGER no_delete BEFORE DELETE ON records BEGIN SELECT RAISE(ABORT, 'kept by policy'); END")
    with pytest.raises(StoreError, match=r"cannot write to .*asrbox.db: kept by policy"):
        s.delete(rid)
    assert [r.id for r in s.query(search="钉钉")] == [rid]  # its search entry came back with the rollback
    other = add(s, "下一条")  # the next write succeeds: no transaction left open
    assert s.get(other) is not None
    _trigger(s, "DROP TRIGGER no_delete")
    assert s.delete(rid) and s.get(rid) is None and s.query(search="钉钉") == []


def test_failed_finish_rolls_back_and_store_stays_writable(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = s.begin("file", source="/x.wav")
    _trigger(s, "CREATE TRIGGER no_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'outbox closed'); END")
    with pytest.raises(StoreError, match="outbox closed"):
        s.finish(rid, language="en", raw_text="a", text="A", segments=[], engine={}, processing_s=0.1, payload=_payload)
    assert s.get(rid).status == "pending"  # type: ignore[union-attr]  # the UPDATE before it was rolled back
    _trigger(s, "DROP TRIGGER no_outbox")

    def broken(seq: int) -> dict[str, object]:
        raise ValueError("payload builder failed")

    with pytest.raises(ValueError, match="payload builder failed"):  # a caller's own error passes unchanged
        s.finish(rid, language="en", raw_text="a", text="A", segments=[], engine={}, processing_s=0.1, payload=broken)
    assert s.get(rid).status == "pending" and s.unsent() == []  # type: ignore[union-attr]
    seq = s.finish(
        rid, language="en", raw_text="a", text="A", segments=[], engine={}, processing_s=0.1, payload=_payload
    )
    assert seq == 1 and s.get(rid).status == "done"  # type: ignore[union-attr]  # a rollback uses up no seq
    assert [(q, p) for q, p, _ in s.unsent()] == [(1, {"seq": 1})]


def test_full_disk_is_a_store_error_and_recoverable(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = s.begin("file", source="/x.wav")
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "disk full" (SQLITE_FULL) at this size
    big = "字" * 200_000
    with pytest.raises(StoreError, match=r"^cannot write to .*asrbox.db: database or disk is full$"):
        s.finish(rid, language="zh", raw_text=big, text=big, segments=[], engine={}, processing_s=1.0)
    with pytest.raises(StoreError, match="database or disk is full"):
        s.begin("file", source=big)  # a one-statement write too
    assert not s._db.in_transaction and s.get(rid).status == "pending"  # type: ignore[union-attr]
    s._db.execute(f"PRAGMA max_page_count={10**9}")  # space freed
    s.finish(rid, language="zh", raw_text=big, text=big, segments=[], engine={}, processing_s=1.0)
    assert s.get(rid).status == "done" and s.integrity_ok()  # type: ignore[union-attr]


def test_read_only_database_is_a_store_error(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = add(s, "只读")
    s._db.execute("PRAGMA query_only=ON")  # the file cannot be written (running as root, chmod would not stop us)
    for write in (lambda: s.delete(rid), lambda: s.begin("file"), lambda: s.claim_attempt(rid), lambda: add(s, "x")):
        with pytest.raises(StoreError, match=r"cannot write to .*: attempt to write a readonly database"):
            write()
    assert s.get(rid) is not None and s.query(search="只读")  # reads still work
    s._db.execute("PRAGMA query_only=OFF")
    assert s.delete(rid)


def test_read_errors_are_store_errors(tmp_path: Path) -> None:
    s = Store(tmp_path)
    _trigger(s, "DROP TABLE sessions")  # e.g. a damaged or foreign database
    with pytest.raises(StoreError, match=r"^cannot read .*asrbox.db: no such table: sessions$"):
        s.session("abcd")
    with pytest.raises(StoreError, match="no such table"):
        s.start_session("x")
    assert s.get(add(s, "仍可写")) is not None  # the rest keeps working


# ---------------------------------------------------------------------- attempts, outbox
def test_claim_attempt_counts_and_survives_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path)
    rid = s.begin("file", source="/x.wav")
    assert s.get(rid).attempts == 0  # type: ignore[union-attr]
    assert [s.claim_attempt(rid) for _ in range(3)] == [1, 2, 3]
    assert s.claim_attempt("no-such-record") == 0
    assert s.claim_attempt(rid, limit=3) is None and s.get(rid).attempts == 3  # type: ignore[union-attr]
    s.fail(rid, "engine crashed 3 times")
    s._db.close()  # no clean close: as if the process died right after the claim
    r = Store(tmp_path).get(rid)
    assert r is not None and r.attempts == 3 and r.status == "failed" and r.error == "engine crashed 3 times"
    assert r.as_dict()["attempts"] == 3


def test_migrations_from_a_version_5_database(tmp_path: Path) -> None:
    """A box upgraded from schema 5 (before attempts, jobs, edits, keys, speakers) migrates in order, rows kept."""
    db = sqlite3.connect(tmp_path / "asrbox.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version={number}")
    db.execute("INSERT INTO records (id, kind, status, created_at) VALUES ('old-row', 'live', 'pending', 'x')")
    db.close()
    s = Store(tmp_path)
    assert s.get("old-row").attempts == 0 and s.claim_attempt("old-row") == 1  # type: ignore[union-attr]
    assert s._version() == len(MIGRATIONS) >= 10
    tables = {r[0] for r in s._read("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "job_files", "record_edits", "api_keys"} <= tables


def test_two_connections_opening_a_new_store_at_once(tmp_path: Path) -> None:
    import threading

    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            Store(tmp_path).close(checkpoint=False)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and Store(tmp_path)._version() == len(MIGRATIONS)


def test_unsent_after_seq_and_prune_keeps_seq_gapless(tmp_path: Path) -> None:
    s = Store(tmp_path)
    seqs = []
    for i in range(4):
        rid = s.begin("file", source=f"/{i}.wav")
        seqs.append(
            s.finish(
                rid, language="en", raw_text="a", text="a", segments=[], engine={}, processing_s=0, payload=_payload
            )
        )
    assert seqs == [1, 2, 3, 4]
    assert [q for q, _, _ in s.unsent(limit=2, after_seq=1)] == [2, 3]
    assert [q for q, _, _ in s.unsent(2)] == [1, 2]
    for q in range(1, 5):
        s.mark_sent(q)
    assert s.prune_outbox("2000-01-01T00:00:00.000Z") == 0  # sent after that: kept
    assert s.prune_outbox("2999-01-01T00:00:00.000Z") == 4 and s.outbox_backlog() == 0
    rid = s.begin("file", source="/5.wav")
    assert (
        s.finish(rid, language="en", raw_text="a", text="a", segments=[], engine={}, processing_s=0, payload=_payload)
        == 5
    )
    assert s.prune_outbox("2999-01-01T00:00:00.000Z") == 0  # never an unsent row
    assert [q for q, _, _ in s.unsent()] == [5]
