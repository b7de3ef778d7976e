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
    assert s.query(search='"') == [] or True  # quotes are escaped, no FTS syntax error
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
