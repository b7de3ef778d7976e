"""Records and sessions over HTTP, against the real daemon (a subprocess with its HTTP face on, a real broker,
real SQLite): records written through the Store before it starts and through live speech (`--source` a WAV of
a Chinese and an English clip). One daemon for the module.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
from conftest import ROOT, Broker, eval_clip, free_port
from http_daemon import HttpDaemon, assert_error

from daemon.store.db import Store, index_text

pytestmark = [pytest.mark.model, pytest.mark.broker]

ZH_CLIP = "zh_aishell1_BAC009S0764W0121"  # 甚至出现交易几乎停滞的情况
EN_CLIP = "en_librispeech_1272-128104-0001"  # Nor is Mr. Quilter's manner less interesting ...
RATE = 16000


def tone_wav(path: Path, seconds: float, freq: float = 440.0) -> Path:
    t = np.arange(int(RATE * seconds)) / RATE
    pcm = (0.2 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


def speech_wav(path: Path) -> Path:
    """The Chinese clip, 1.5 s of silence, the English clip, 1.5 s of silence: two utterances."""
    silence = np.zeros(int(RATE * 1.5), dtype="<i2")
    parts = []
    for clip in (ZH_CLIP, EN_CLIP):
        wav, _ = eval_clip(clip)
        with wave.open(str(wav), "rb") as w:
            assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
            parts += [np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), silence]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate([silence, *parts]).tobytes())
    return path


class Seeded:
    """What the module writes through the Store before the daemon starts."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # name -> record id
        self.bulk: list[str] = []  # ids of the paging set, in the order stored
        self.user_file: Path | None = None
        self.store_audio: Path | None = None


def _insert(db: Any, **row: Any) -> str:
    rid = str(uuid.uuid4())
    segments = row.pop("segments", None)
    text = row.get("text")
    if segments is None and text:
        segments = [{"start": 0.0, "end": 2.0, "text": text}]
    cols = {"id": rid, "status": "done", "raw_text": text, "segments": json.dumps(segments or [], ensure_ascii=False)}
    cols.update(row)
    cur = db.execute(
        f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", tuple(cols.values())
    )
    if text:
        body = " ".join(x for x in (text, Path(row["source"]).name if row.get("source") else "") if x)
        db.execute("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", (cur.lastrowid, index_text(body)))
    return rid


def seed(store_dir: Path, workdir: Path) -> Seeded:
    s = Seeded()
    s.user_file = tone_wav(workdir / "user files" / "meeting.wav", 1.0, 330)
    s.store_audio = tone_wav(store_dir / "uploads" / "api" / "lecture.wav", 0.5, 550)
    store = Store(store_dir)
    with store._tx() as db:
        db.execute(
            "INSERT INTO sessions (id, name, started_at, ended_at) VALUES ('s-old', '周一例会', "
            "'2025-03-03T01:00:00.000Z', '2025-03-03T02:00:00.000Z')"
        )
        for i in range(120):  # the paging set: 2025-01-01 .. 2025-04-30, zh and en, live and file
            zh = i % 2 == 0
            live = i % 3 != 0
            day = f"2025-{1 + i // 30:02d}-{1 + i % 28:02d}T08:00:{i % 60:02d}.000Z"
            s.bulk.append(
                _insert(
                    db,
                    kind="live" if live else "file",
                    source=None if live else f"/srv/in/day{i}.wav",
                    session_id="s-old" if live and i < 12 else None,
                    created_at=day,
                    started_at=day if live else None,
                    ended_at=day if live else None,
                    duration_s=2.0,
                    language="zh" if zh else "en",
                    text=f"第{i}号 普通记录" if zh else f"plain record number {i}",
                )
            )
        two = [{"start": 0.0, "end": 1.2, "text": "今天开会"}, {"start": 1.2, "end": 2.5, "text": "讨论预算"}]
        upload = "uploads/api/lecture.wav"
        duo = [
            {"start": 0, "end": 1, "text": "hello there.", "speaker": "S1"},
            {"start": 1, "end": 2, "text": "general kenobi", "speaker": "S2"},
        ]
        named: list[tuple[str, str, str, str, str | None, dict[str, Any]]] = [  # name, source, day, lang, text, more
            ("zh", "/srv/in/会议.wav", "05-01T09", "zh", "今天开会讨论预算", {"segments": two, "duration_s": 2.5}),
            ("en", "/srv/in/board.wav", "05-01T10", "en", "The quarterly budget was approved.", {}),
            ("one", "/srv/in/memo.wav", "05-02T10", "en", "Call the plumber on Friday.", {}),
            ("user_audio", str(s.user_file), "05-03T10", "en", "user file kept", {"audio_path": str(s.user_file)}),
            ("store_audio", "lecture.wav", "05-03T11", "en", "stored upload", {"audio_path": upload}),
            ("escape", "x.wav", "05-03T12", "en", "escaping path", {"audio_path": "../user files/meeting.wav"}),
            ("pending", "busy.wav", "05-04T12", "en", None, {"status": "pending"}),
            ("speaker", "panel.wav", "05-05T12", "en", "hello there. general kenobi", {"segments": duo}),
        ]
        for name, source, day, language, text, more in named:
            created = f"2025-{day}:00:00.000Z"
            s.ids[name] = _insert(
                db, kind="file", source=source, created_at=created, language=language, text=text, **more
            )
    store.close()
    return s


class Daemon(HttpDaemon):
    """HttpDaemon's checks (stop: no traceback in the log), with a broker, a seeded store and speech."""

    def __init__(self, workdir: Path, cache_dir: Path, broker: Broker) -> None:
        self.workdir = workdir
        self.store = workdir / "store"
        self.seeded = seed(self.store, workdir)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
        env.update(
            ASRBOX_STORE__PATH=str(self.store),
            ASRBOX_ASR__CACHE_DIR=str(cache_dir),
            ASRBOX_HTTP__ENABLED="true",
            ASRBOX_HTTP__PORT=str(port),
            ASRBOX_MQTT__HOST="127.0.0.1",
            ASRBOX_MQTT__PORT=str(broker.port),
            ASRBOX_MQTT__DEVICE_ID="recordsbox",
            ASRBOX_ASR__LANGUAGE="auto",
            PYTHONUNBUFFERED="1",
            TZ="UTC",  # bare dates in filters are the box's local time
        )
        self.env = env
        self.log = workdir / "daemon.log"
        wav = speech_wav(workdir / "speech.wav")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--source", str(wav), "--speed", "2"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self._wait_healthy(120)

    def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if cond():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout} s; log: {self.log.read_text()[-2000:]}")

    def live(self) -> list[dict[str, Any]]:
        """The two live utterances, once transcribed (oldest first)."""

        def done() -> list[dict[str, Any]]:
            items = self.http.get("/api/records", params={"source": "live", "since": "2026-01-01"}).json()["items"]
            return [r for r in items if r["session_id"] != "s-old"]

        self.wait(lambda: len(done()) >= 2 and all(r["status"] == "done" for r in done()), 180, "two live finals")
        return done()[::-1]

    def get(self, path: str, **kw: Any) -> Any:
        r = self.http.get(path, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()

    def stop(self) -> str:
        self.http.close()
        return super().stop()  # SIGTERM; no traceback in the log


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("records")
    broker = Broker(workdir)
    broker.start()
    d = Daemon(workdir, cache_dir, broker)
    yield d
    d.stop()
    broker.stop()


def ids(body: dict[str, Any]) -> list[str]:
    return [r["id"] for r in body["items"]]


# ---------------------------------------------------------------------------------------------- reading
def test_paging_walks_every_record_once_newest_first(daemon: Daemon) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 25, "until": "2025-04-30"}
        if cursor:
            params["cursor"] = cursor
        body = daemon.get("/api/records", params=params)
        seen += ids(body)
        cursor = body["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == daemon.seeded.bulk[::-1] and pages == 5  # 120 records: 4 pages of 25, then 20 and no cursor
    first = daemon.get("/api/records", params={"limit": 1})["items"][0]
    assert set(first) >= {
        "id",
        "kind",
        "status",
        "source",
        "session_id",
        "created_at",
        "started_at",
        "ended_at",
        "duration_s",
        "language",
        "text",
        "raw_text",
        "segments",
        "edited_at",
        "has_audio",
        "error",
    }


def test_filters_date_source_session_language_speaker(daemon: Daemon) -> None:
    bulk = daemon.seeded.bulk

    def all_ids(**params: Any) -> list[str]:
        return ids(daemon.get("/api/records", params={"limit": 500, **params}))

    feb = all_ids(since="2025-02-01", until="2025-02-28")
    assert feb == bulk[30:60][::-1]
    files = all_ids(source="file", until="2025-04-30")
    assert files == [bulk[i] for i in range(120) if i % 3 == 0][::-1]
    zh_live = all_ids(source="live", language="zh", until="2025-04-30")
    assert zh_live == [bulk[i] for i in range(120) if i % 3 != 0 and i % 2 == 0][::-1]
    assert all_ids(session="s-old") == [bulk[i] for i in range(12) if i % 3 != 0][::-1]
    assert all_ids(speaker="S2") == [daemon.seeded.ids["speaker"]]
    zoned = all_ids(since="2025-05-01T09:30:00+00:00", until="2025-05-01T10:30:00Z")
    assert zoned == [daemon.seeded.ids["en"]]


def test_search_chinese_and_english_and_live_speech(daemon: Daemon) -> None:
    s = daemon.seeded.ids
    assert ids(daemon.get("/api/records", params={"q": "预算"})) == [s["zh"]]
    assert ids(daemon.get("/api/records", params={"q": "讨论 开会"})) == [s["zh"]]  # every word, any order
    assert ids(daemon.get("/api/records", params={"q": "会议"})) == [s["zh"]]  # the file's name is indexed too
    assert ids(daemon.get("/api/records", params={"q": "BUDGET"})) == [s["en"]]
    assert ids(daemon.get("/api/records", params={"q": "budget", "source": "live"})) == []
    assert len(ids(daemon.get("/api/records", params={"q": "记录", "limit": 500}))) == 60
    # a page of a search goes on with its cursor, newest first, no repeats
    first = daemon.get("/api/records", params={"q": "plain record", "limit": 40})
    second = daemon.get("/api/records", params={"q": "plain record", "limit": 40, "cursor": first["next_cursor"]})
    assert ids(first) + ids(second) == [daemon.seeded.bulk[i] for i in range(120) if i % 2][::-1]
    assert second["next_cursor"] is None
    zh, en = daemon.live()
    assert zh["language"] == "zh" and "交易" in zh["text"] and en["language"] == "en"
    assert ids(daemon.get("/api/records", params={"q": "交易"})) == [zh["id"]]
    word = max(en["text"].split(), key=len).strip(".,!?")
    assert en["id"] in ids(daemon.get("/api/records", params={"q": word}))


def test_get_and_unknown_record(daemon: Daemon) -> None:
    rec = daemon.get(f"/api/records/{daemon.seeded.ids['zh']}")["record"]
    assert rec["text"] == rec["raw_text"] == "今天开会讨论预算" and len(rec["segments"]) == 2
    assert rec["has_audio"] is False and rec["edited_at"] is None
    assert_error(daemon.http.get("/api/records/no-such-id"), 404, "no record")


# ---------------------------------------------------------------------------------------------- edits
def test_edit_keeps_recognizer_text_reindexes_and_reverts(daemon: Daemon) -> None:
    rid = daemon.seeded.ids["one"]
    r = daemon.http.patch(f"/api/records/{rid}", json={"text": "Call the electrician on Friday."})
    assert r.status_code == 200, r.text
    rec = r.json()["record"]
    assert rec["text"] == "Call the electrician on Friday." and rec["raw_text"] == "Call the plumber on Friday."
    assert rec["segments"][0]["text"] == rec["text"] and rec["edited_at"]
    assert ids(daemon.get("/api/records", params={"q": "electrician"})) == [rid]
    assert ids(daemon.get("/api/records", params={"q": "plumber"})) == []
    # per-line edit: segments (times kept by the client); the text follows them
    segs = [{"start": 0.0, "end": 1.0, "text": "Call the roofer"}, {"start": 1.0, "end": 2.0, "text": "on Monday."}]
    rec = daemon.http.patch(f"/api/records/{rid}", json={"segments": segs}).json()["record"]
    assert rec["text"] == "Call the roofer on Monday." and [s["text"] for s in rec["segments"]] == [
        "Call the roofer",
        "on Monday.",
    ]
    edits = daemon.get(f"/api/records/{rid}/edits")["items"]
    assert [e["old_text"] for e in edits] == ["Call the plumber on Friday.", "Call the electrician on Friday."]
    assert edits[1]["new_segments"] == segs and all(e["edited_at"] for e in edits)
    # the edit survives a new read and is what exports show
    assert daemon.get(f"/api/records/{rid}")["record"]["text"] == "Call the roofer on Monday."
    rec = daemon.http.post(f"/api/records/{rid}/revert").json()["record"]
    assert rec["text"] == "Call the plumber on Friday." and rec["edited_at"] is None
    assert rec["segments"] == [{"start": 0.0, "end": 2.0, "text": "Call the plumber on Friday."}]
    assert ids(daemon.get("/api/records", params={"q": "plumber"})) == [rid]
    assert ids(daemon.get("/api/records", params={"q": "roofer"})) == []
    assert len(daemon.get(f"/api/records/{rid}/edits")["items"]) == 3  # the revert is in the history too


def test_edit_of_chinese_segments_joins_without_spaces(daemon: Daemon) -> None:
    rid = daemon.seeded.ids["zh"]
    segs = [{"start": 0.0, "end": 1.2, "text": "明天开会"}, {"start": 1.2, "end": 2.5, "text": "讨论经费"}]
    rec = daemon.http.patch(f"/api/records/{rid}", json={"segments": segs}).json()["record"]
    assert rec["text"] == "明天开会讨论经费" and rec["raw_text"] == "今天开会讨论预算"
    assert ids(daemon.get("/api/records", params={"q": "经费"})) == [rid]
    daemon.http.post(f"/api/records/{rid}/revert")
    assert ids(daemon.get("/api/records", params={"q": "预算"})) == [rid]


# ---------------------------------------------------------------------------------------------- audio
def test_audio_with_ranges(daemon: Daemon) -> None:
    rid = daemon.seeded.ids["store_audio"]
    whole = (daemon.store / "uploads" / "api" / "lecture.wav").read_bytes()
    r = daemon.http.get(f"/api/records/{rid}/audio")
    assert r.status_code == 200 and r.content == whole and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"].startswith("audio/")
    r = daemon.http.get(f"/api/records/{rid}/audio", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == whole[:100]
    assert r.headers["content-range"] == f"bytes 0-99/{len(whole)}" and r.headers["content-length"] == "100"
    r = daemon.http.head(f"/api/records/{rid}/audio")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(whole)) and not r.content
    r = daemon.http.get(f"/api/records/{rid}/audio", headers={"Range": "bytes=0-99, 200-299"})
    assert r.status_code == 200 and r.content == whole  # several ranges: the whole file (RFC 9110 allows it)
    r = daemon.http.get(f"/api/records/{rid}/audio", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == whole[1000:]
    r = daemon.http.get(f"/api/records/{rid}/audio", headers={"Range": "bytes=-44"})
    assert r.status_code == 206 and r.content == whole[-44:]
    r = daemon.http.get(f"/api/records/{rid}/audio", headers={"Range": f"bytes=10-{len(whole) * 2}"})
    assert r.status_code == 206 and r.content == whole[10:]
    for bad in (f"bytes={len(whole)}-", "bytes=50-10", "bytes=abc", "bytes=-0", "bytes=-"):
        r = daemon.http.get(f"/api/records/{rid}/audio", headers={"Range": bad})
        assert_error(r, 416, "range")
        assert r.headers["content-range"] == f"bytes */{len(whole)}"
    # a user's file transcribed in place is served from its recorded path; a path leaving the store is not
    user = daemon.http.get(f"/api/records/{daemon.seeded.ids['user_audio']}/audio")
    assert user.status_code == 200 and user.content == (daemon.seeded.user_file or Path()).read_bytes()
    assert_error(daemon.http.get(f"/api/records/{daemon.seeded.ids['escape']}/audio"), 404, "no audio")
    assert_error(daemon.http.get(f"/api/records/{daemon.seeded.ids['en']}/audio"), 404, "no audio")
    assert_error(daemon.http.get("/api/records/nope/audio"), 404, "no record")
    # a live utterance's archived audio (relative to the store)
    zh, _ = daemon.live()
    r = daemon.http.get(f"/api/records/{zh['id']}/audio", headers={"Range": "bytes=0-11"})
    assert r.status_code == 206 and r.content[:4] == b"RIFF" and r.content[8:12] == b"WAVE"


# ---------------------------------------------------------------------------------------------- exports
def test_export_selection_every_format(daemon: Daemon) -> None:
    s = daemon.seeded.ids
    sel = [s["en"], s["zh"], s["speaker"]]

    def export(fmt: str) -> httpx.Response:
        r = daemon.http.post("/api/records/export", json={"ids": sel, "format": fmt})
        assert r.status_code == 200, r.text
        assert (
            r.headers["content-disposition"].startswith("attachment;") and f".{fmt}" in r.headers["content-disposition"]
        )
        return r

    txt = export("txt").text
    assert "今天开会" in txt and "The quarterly budget was approved." in txt and "S2: general kenobi" in txt
    assert txt.index("今天开会") < txt.index("quarterly")  # oldest first
    srt = export("srt").text
    assert srt.count(" --> ") == 5 and "S1: hello there." in srt
    vtt = export("vtt").text
    assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == 5
    raw = export("csv").content
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the BOM
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0] == "record_id,created_at,source,language,start,end,text,speaker" and len(lines) == 6
    assert f"{s['zh']},2025-05-01T09:00:00.000Z,会议.wav,zh,1.20,2.50,讨论预算," in lines
    body = json.loads(export("json").content)
    assert [r["id"] for r in body["records"]] == [s["zh"], s["en"], s["speaker"]]
    from docx import Document

    doc = Document(io.BytesIO(export("docx").content))
    text = "\n".join(p.text for p in doc.paragraphs)
    assert "讨论预算" in text and "The quarterly budget was approved." in text and "S1: hello there." in text
    # a name given to a label (the speakers' API) is what exports show
    r = daemon.http.put(f"/api/records/{s['speaker']}/speakers/S1", json={"name": "Obi-Wan"})
    assert r.status_code == 200, r.text
    assert "Obi-Wan: hello there." in export("srt").text and "S2: general kenobi" in export("vtt").text
    assert "1.00,2.00,general kenobi,S2" in export("csv").content.decode("utf-8-sig")
    assert "Obi-Wan: hello there." in "\n".join(p.text for p in Document(io.BytesIO(export("docx").content)).paragraphs)
    listed = daemon.http.get(f"/api/records/{s['speaker']}/speakers").json()["speakers"]
    assert listed == [{"label": "S1", "name": "Obi-Wan"}, {"label": "S2", "name": None}]
    assert daemon.http.put("/api/records/nope/speakers/S1", json={"name": "x"}).status_code == 404
    r = daemon.http.put(f"/api/records/{s['speaker']}/speakers/S1", json={"name": ""})
    assert r.status_code == 200 and r.json()["name"] is None


# ---------------------------------------------------------------------------------------------- sessions
def test_sessions_live_records_export_stop_start(daemon: Daemon) -> None:
    zh, en = daemon.live()
    listing = daemon.get("/api/sessions")
    sid = zh["session_id"]
    assert listing["current"] == sid and listing["items"][0]["id"] == sid
    assert listing["items"][-1]["id"] == "s-old"
    got = daemon.get(f"/api/sessions/{sid}")
    assert [r["id"] for r in got["records"]] == [zh["id"], en["id"]] and got["session"]["ended_at"] is None
    assert daemon.get("/api/sessions/current")["session"]["id"] == sid
    srt = daemon.http.get(f"/api/sessions/{sid}/export", params={"format": "srt"}).text
    assert srt.count(" --> ") == 2 and zh["text"] in srt
    h, m, rest = srt.split("\n")[1].split(" --> ")[0].split(":")  # on the session's timeline, after the silence
    assert int(h) == int(m) == 0 and 0.3 < float(rest.replace(",", ".")) < 10
    csv_doc = daemon.http.get(f"/api/sessions/{sid}/export", params={"format": "csv"}).content
    assert csv_doc.startswith(b"\xef\xbb\xbf") and zh["text"] in csv_doc.decode("utf-8-sig")
    stopped = daemon.http.post("/api/sessions/current/stop").json()
    assert stopped["session"]["id"] == sid and stopped["session"]["summary"]["utterances"] == 2
    assert daemon.get("/api/sessions")["current"] is None
    assert daemon.http.post("/api/sessions/current/stop").json() == {"ok": True, "session": None}
    assert_error(daemon.http.get("/api/sessions/current"), 404, "no session")
    r = daemon.http.post("/api/sessions", json={"name": "课堂 A", "language": "zh"})
    assert r.status_code == 200 and r.json()["started"] is True
    new = r.json()["session"]
    assert new["name"] == "课堂 A" and daemon.get("/api/sessions")["current"] == new["id"]
    again = daemon.http.post("/api/sessions", json={"name": "other"}).json()
    assert again["started"] is False and again["session"]["id"] == new["id"]
    page = daemon.get("/api/sessions", params={"limit": 1})
    assert ids(page) == [new["id"]] and page["next_cursor"]
    assert ids(daemon.get("/api/sessions", params={"limit": 1, "cursor": page["next_cursor"]})) == [sid]
    daemon.http.post("/api/sessions/current/stop")


# ---------------------------------------------------------------------------------------------- deletion
def test_delete_removes_store_audio_keeps_user_files_refuses_pending(daemon: Daemon) -> None:
    s = daemon.seeded
    upload = daemon.store / "uploads" / "api" / "lecture.wav"
    assert upload.is_file()
    r = daemon.http.delete(f"/api/records/{s.ids['store_audio']}")
    assert r.status_code == 200 and r.json()["audio_deleted"] is True and not upload.exists()
    assert_error(daemon.http.get(f"/api/records/{s.ids['store_audio']}"), 404, "no record")
    assert ids(daemon.get("/api/records", params={"q": "stored upload"})) == []
    r = daemon.http.delete(f"/api/records/{s.ids['user_audio']}")
    assert r.status_code == 200 and r.json()["audio_deleted"] is False and (s.user_file or Path()).is_file()
    assert_error(daemon.http.delete(f"/api/records/{s.ids['pending']}"), 409, "being transcribed")
    assert daemon.get(f"/api/records/{s.ids['pending']}")["record"]["status"] == "pending"  # still there
    assert_error(daemon.http.delete(f"/api/records/{s.ids['store_audio']}"), 404, "no record")
    # an edited record goes with its edits
    rid = s.ids["escape"]
    daemon.http.patch(f"/api/records/{rid}", json={"text": "changed"})
    assert daemon.http.delete(f"/api/records/{rid}").status_code == 200
    assert_error(daemon.http.get(f"/api/records/{rid}/edits"), 404, "no record")


# ---------------------------------------------------------------------------------------------- refusals
def test_bad_requests_are_clear_4xx(daemon: Daemon) -> None:
    h = daemon.http
    rid = daemon.seeded.ids["en"]
    cases: list[tuple[httpx.Response, int, str]] = [
        (h.get("/api/records", params={"cursor": "not-a-cursor"}), 400, "cursor"),
        (h.get("/api/records", params={"cursor": "WyJ4Il0"}), 400, "cursor"),  # valid base64 JSON, not ours
        (h.get("/api/records", params={"since": "yesterday"}), 400, "since"),
        (h.get("/api/records", params={"until": "2025-13-45"}), 400, "until"),
        (h.get("/api/records", params={"since": "2025-05-02", "until": "2025-05-01"}), 400, "after"),
        (h.get("/api/records", params={"limit": 100000}), 422, "limit"),
        (h.get("/api/records", params={"limit": 0}), 422, "limit"),
        (h.get("/api/records", params={"source": "tape"}), 422, "source"),
        (h.get("/api/sessions", params={"cursor": "WzFd"}), 400, "cursor"),
        (h.get("/api/sessions/nope"), 404, "no session"),
        (h.get("/api/sessions/nope/export"), 404, "no session"),
        (h.get("/api/sessions/s-old/export", params={"format": "pdf"}), 422, "format"),
        (h.patch("/api/records/nope", json={"text": "x"}), 404, "no record"),
        (h.patch(f"/api/records/{rid}", json={}), 400, "nothing to change"),
        (h.patch(f"/api/records/{rid}", json={"txt": "x"}), 422, "txt"),
        (h.patch(f"/api/records/{rid}", json={"text": 5}), 422, "text"),
        (
            h.patch(f"/api/records/{rid}", content=b"{not json", headers={"content-type": "application/json"}),
            422,
            "json",
        ),
        (h.patch(f"/api/records/{rid}", json={"segments": [{"start": 2, "end": 1, "text": "x"}]}), 400, "start"),
        (h.patch(f"/api/records/{rid}", json={"segments": [{"start": "a", "end": 1, "text": "x"}]}), 400, "numbers"),
        (h.patch(f"/api/records/{rid}", json={"segments": ["x"]}), 400, "segments[0]"),
        (h.patch(f"/api/records/{daemon.seeded.ids['pending']}", json={"text": "x"}), 409, "pending"),
        (h.post("/api/records/nope/revert"), 404, "no record"),
        (h.get("/api/records/nope/edits"), 404, "no record"),
        (h.delete("/api/records/nope"), 404, "no record"),
        (h.post("/api/records/export", json={"ids": [rid], "format": "pdf"}), 422, "format"),
        (h.post("/api/records/export", json={"ids": [], "format": "txt"}), 422, "ids"),
        (h.post("/api/records/export", json={"ids": [rid, "nope"], "format": "txt"}), 404, "nope"),
        (h.post("/api/sessions", json={"language": "../etc"}), 400, "language"),
    ]
    for r, status, word in cases:
        assert_error(r, status, word)
    assert daemon.get(f"/api/records/{rid}")["record"]["text"] == "The quarterly budget was approved."


def test_cli_edit_and_revert_while_the_daemon_runs(daemon: Daemon) -> None:
    rid = daemon.seeded.ids["en"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return daemon.asrbox("history", *args)

    r = cli("edit", rid[:8], "The annual budget was approved.")
    assert r.returncode == 0 and r.stdout.strip() == "The annual budget was approved.", r.stderr
    rec = daemon.get(f"/api/records/{rid}")["record"]
    assert rec["text"] == "The annual budget was approved." and rec["edited_at"]
    assert ids(daemon.get("/api/records", params={"q": "annual"})) == [rid]
    r = cli("revert", rid)
    assert r.returncode == 0 and r.stdout.strip() == "The quarterly budget was approved."
    assert daemon.get(f"/api/records/{rid}")["record"]["edited_at"] is None
    r = cli("edit", daemon.seeded.ids["pending"], "x")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "pending" in r.stderr and "Traceback" not in r.stderr
    r = cli("delete", daemon.seeded.ids["pending"])
    assert r.returncode == 1 and "being transcribed" in r.stderr
