"""The HTTP face and the Wyoming port probed from outside, as hostile or careless clients would: odd Range
headers, lone surrogates and non-finite numbers in JSON, cursors and dates at the edge of what SQLite and the
calendar hold, deeply nested Wyoming headers, slow and abandoned uploads, 20 parallel transcriptions, a shutdown
with a request in flight. Each bad request must get a one-line 4xx JSON error, never a 500 or a traceback in the
daemon's log (HttpDaemon.stop checks), and nothing stored may change.

One daemon serves the module: loopback (open), Wyoming on, faint noise as the microphone (live speech on this
2-core CI starves interactive requests, which come after live finals by design).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import eval_clip, free_port
from http_daemon import HttpDaemon, assert_error, raw_http

pytestmark = pytest.mark.model

SHORT = "en_librispeech_1272-128104-0001"  # 4.6 s of speech


class Box:
    def __init__(self, daemon: HttpDaemon, wyoming_port: int, record_id: str) -> None:
        self.d = daemon
        self.url = daemon.url
        self.wyoming_port = wyoming_port
        self.record_id = record_id  # a transcribed file record (its upload is its audio)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Box]:
    wyoming_port = free_port()
    d = HttpDaemon(
        tmp_path_factory.mktemp("probe"),
        cache_dir,
        ASRBOX_WYOMING__ENABLED="true",
        ASRBOX_WYOMING__PORT=str(wyoming_port),
    )
    try:
        wav, _ = eval_clip(SHORT)
        r = httpx.post(f"{d.url}/v1/audio/transcriptions", files={"file": ("short.wav", wav.read_bytes())}, timeout=300)
        assert r.status_code == 200, r.text
        yield Box(d, wyoming_port, r.headers["x-asrbox-record-id"])
    finally:
        d.stop()  # no traceback in its log (the last test has stopped it already)


def _record(box: Box) -> dict[str, Any]:
    r = httpx.get(f"{box.url}/api/records/{box.record_id}", timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json()["record"])


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ---------------------------------------------------------------------------- records: hostile input
def test_records_refuse_hostile_input_with_4xx_and_keep_the_record(box: Box) -> None:
    before = _record(box)
    rid, u = box.record_id, box.url

    def patch(body: bytes) -> httpx.Response:
        headers = {"content-type": "application/json"}
        return httpx.patch(f"{u}/api/records/{rid}", content=body, headers=headers, timeout=30)

    def seg(start: bytes, end: bytes, extra: bytes = b"") -> bytes:
        return b'{"segments": [{"start": ' + start + b', "end": ' + end + b', "text": "x"' + extra + b"}]}"

    def records(**params: str) -> httpx.Response:
        return httpx.get(f"{u}/api/records", params=params, timeout=30)

    cases: list[tuple[str, httpx.Response, int, tuple[str, ...]]] = [
        # JSON lets a client send lone surrogates; SQLite cannot store them (was: 500)
        ("text surrogate", patch(b'{"text": "a\\ud800b"}'), 400, ("text", "unicode")),
        ("segment text surrogate", patch(b'{"segments": [{"start": 0, "end": 1, "text": "\\udc00"}]}'), 400, ()),
        ("speaker surrogate", patch(seg(b"0", b"1", b', "speaker": "\\ud83d"')), 400, ("speaker",)),
        # non-finite or absurd times (were: stored, then served as null or as a 2.8e26-hour SRT cue, or a 500)
        ("end Infinity", patch(seg(b"0", b"Infinity")), 400, ("segments[0]",)),
        ("end 1e999", patch(seg(b"0", b"1e999")), 400, ("segments[0]",)),
        ("start NaN", patch(seg(b"NaN", b"1")), 400, ("segments[0]",)),
        ("end 400 digits", patch(seg(b"0", b"9" * 400)), 400, ("segments[0]",)),
        ("end 1e30", patch(seg(b"0", b"1" + b"0" * 30)), 400, ("segments[0]",)),
        # cursors SQLite cannot bind (were: 500)
        ("cursor past int64", records(cursor=_cursor(b"[" + b"9" * 300 + b"]")), 400, ("cursor",)),
        (
            "session cursor surrogate",
            httpx.get(f"{u}/api/sessions", params={"cursor": _cursor(b'["\\ud800", "x"]')}, timeout=30),
            400,
            ("cursor",),
        ),
        # times at the calendar's edges (were: 500 OverflowError / ValueError)
        ("since 9999 behind UTC", records(since="9999-12-31T23:59:59-23:59"), 400, ("since",)),
        ("since year 1 ahead of UTC", records(since="0001-01-01T00:00:00+01:00"), 400, ("since",)),
        (
            "export surrogate id",
            httpx.post(
                f"{u}/api/records/export",
                content=b'{"ids": ["\\ud800"]}',
                headers={"content-type": "application/json"},
                timeout=30,
            ),
            422,
            ("ids", "unicode"),
        ),
    ]
    for name, response, status, words in cases:
        try:
            assert_error(response, status, *words)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None

    # an unknown id is not echoed whole (20 000 characters came back in the message)
    long_id = "a" * 20_000
    message = assert_error(httpx.get(f"{u}/api/records/{long_id}", timeout=30), 404, "no record")["message"]
    assert len(message) < 200, len(message)
    # a NUL in a search is not SQLite's "unterminated string" (with the store's path) but a search
    found = records(q="fellow\x00Americans")
    assert found.status_code == 200, found.text
    assert _record(box) == before  # nothing changed
    assert httpx.get(f"{u}/api/records/{rid}/edits", timeout=30).json()["items"] == []


def test_odd_ranges_are_416_or_the_whole_file(box: Box) -> None:
    path = f"/api/records/{box.record_id}/audio"

    def get(range_value: bytes) -> tuple[int, bytes]:
        return raw_http(
            box.d.port,
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nRange: " + range_value + b"\r\n"
            b"Connection: close\r\n\r\n",
        )

    size = int(httpx.head(f"{box.url}{path}", timeout=30).headers["content-length"])
    for value in (
        b"bytes=\xb2-",  # latin-1 superscript two: str.isdigit() says yes, int() says no (was: 500)
        b"bytes=0-\xb9",
        b"bytes=" + b"1" * 5000 + b"-",  # past int()'s 4300-digit limit (was: 500)
        b"bytes=-0",
        b"bytes=5-1",
        b"bytes=99999999999999999999999999-",
        b"bytes=-",
        b"bytes=a-b",
    ):
        status, body = get(value)
        assert status == 416, (value[:40], status, body[:200])
        assert json.loads(body)["ok"] is False
    status, body = get(b"bytes=0-" + b"9" * 900)  # a last position past the end: clamped to the file
    assert status == 206 and len(body) == size
    status, body = get(b"bytes=0-1,5-9")  # several ranges: the whole file
    assert status == 200 and len(body) == size


# ---------------------------------------------------------------------------- uploads
def _multipart(boundary: bytes, *parts: tuple[bytes, bytes | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        fn = b'; filename="' + filename + b'"' if filename is not None else b""
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name + b'"' + fn + b"\r\n\r\n"
        out += data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def _post_multipart(box: Box, boundary: bytes, body: bytes) -> tuple[int, bytes]:
    head = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary="
        + boundary
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    return raw_http(box.d.port, head + body)


def _file_records(box: Box) -> list[dict[str, Any]]:
    r = httpx.get(f"{box.url}/api/records", params={"source": "file", "limit": 500}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_a_boundary_too_long_is_a_4xx(box: Box) -> None:
    wav, _ = eval_clip(SHORT)
    boundary = b"B" * 5000
    status, body = _post_multipart(box, boundary, _multipart(boundary, (b"file", b"a.wav", wav.read_bytes())))
    assert 400 <= status < 500, (status, body[:300])


def test_an_unknown_language_is_refused_before_anything_is_stored(box: Box) -> None:
    wav, _ = eval_clip(SHORT)
    before = len(_file_records(box))
    r = httpx.post(
        f"{box.url}/v1/audio/transcriptions",
        files={"file": ("a.wav", wav.read_bytes())},
        data={"language": "zz"},
        timeout=300,
    )
    assert_error(r, 400, "language")
    assert "ValueError" not in r.text
    assert len(_file_records(box)) == before


def test_slow_and_abandoned_uploads_leave_nothing_and_do_not_block_others(box: Box) -> None:
    wav, _ = eval_clip(SHORT)
    boundary = b"XyZ"
    body = _multipart(boundary, (b"file", b"slow.wav", wav.read_bytes()))
    head = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    before = {r["id"] for r in _file_records(box)}
    slow = []
    for _ in range(20):  # 20 uploads that stall after their first kilobyte
        s = socket.create_connection(("127.0.0.1", box.d.port), timeout=30)
        s.sendall(head + body[:1024])
        slow.append(s)
    hung = socket.create_connection(("127.0.0.1", box.d.port), timeout=30)
    hung.sendall(b"GET /api/state HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers never finished
    try:
        # the box keeps serving others meanwhile
        assert httpx.get(f"{box.url}/api/state", timeout=30).status_code == 200
        r = httpx.post(f"{box.url}/v1/audio/transcriptions", files={"file": ("ok.wav", wav.read_bytes())}, timeout=300)
        assert r.status_code == 200 and r.json()["text"], r.text
    finally:
        for s in slow:  # the clients go away mid-upload
            s.close()
        hung.close()
    uploads = box.d.store / "uploads" / "api"
    deadline = time.monotonic() + 30
    while [p for p in uploads.iterdir() if p.name.startswith(".part")] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p.name for p in uploads.iterdir() if p.name.startswith(".part")] == []
    after = {r["id"]: r for r in _file_records(box)}
    assert before <= set(after)  # nothing lost
    assert [after[i]["source"] for i in set(after) - before] == ["ok.wav"]  # no record of an abandoned upload


def test_twenty_parallel_transcriptions_none_lost(box: Box) -> None:
    wav, _ = eval_clip(SHORT)
    data = wav.read_bytes()

    def one(i: int) -> httpx.Response:
        return httpx.post(f"{box.url}/v1/audio/transcriptions", files={"file": (f"p{i}.wav", data)}, timeout=600)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert [a.status_code for a in answers] == [200] * 20, [a.text[:200] for a in answers if a.status_code != 200]
    texts = {a.json()["text"] for a in answers}
    assert len(texts) == 1, texts  # the same file gives the same text, whatever else runs
    text = texts.pop()
    ids = [a.headers["x-asrbox-record-id"] for a in answers]
    assert len(set(ids)) == 20
    stored = {r["id"]: r for r in _file_records(box)}
    assert set(ids) <= set(stored)  # none lost
    assert all(stored[i]["status"] == "done" and stored[i]["text"] == text for i in ids)


# ---------------------------------------------------------------------------- Wyoming
def _wyoming(box: Box, data: bytes) -> list[dict[str, Any]]:
    """Send raw bytes; the events the server answers with until it closes (or 10 s of silence)."""
    with socket.create_connection(("127.0.0.1", box.wyoming_port), timeout=10) as s:
        s.sendall(data)
        raw = b""
        try:
            while chunk := s.recv(65536):
                raw += chunk
        except TimeoutError:
            pass
    events, rest = [], raw
    while rest:
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        size = header.get("data_length") or 0
        header["data"] = {**(header.get("data") or {}), **(json.loads(rest[:size]) if size else {})}
        rest = rest[size + (header.get("payload_length") or 0) :]
        events.append(header)
    return events


def test_wyoming_nesting_and_garbage_get_an_error_event(box: Box) -> None:
    deep = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB line limit; deeper than json goes (was: no answer)
    for data in (
        b'{"type": "x", "data": ' + deep + b"}\n",
        b'{"type": "describe", "data_length": ' + str(len(deep)).encode() + b"}\n" + deep,
        b"\x00\xff\xfe garbage\n",
    ):
        events = _wyoming(box, data)
        assert [e["type"] for e in events] == ["error"], (data[:40], events)
        assert events[0]["data"]["text"] and "\n" not in events[0]["data"]["text"]
    assert [e["type"] for e in _wyoming(box, b'{"type": "ping"}\n')][:1] == ["pong"]
    assert "session failed" not in box.d.log.read_text()


# ---------------------------------------------------------------------------- a 500 stays one line
def test_an_unexpected_error_is_a_500_json_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """Starlette's ServerErrorMiddleware re-raises after an `exception_handler(Exception)`, so uvicorn logged every
    500's traceback at ERROR; the app's own middleware keeps it: one ERROR line, the traceback at DEBUG."""
    from fastapi import FastAPI

    from daemon.http.app import _Contained

    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    app.add_middleware(_Contained)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/boom",
        "raw_path": b"/boom",
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("t", 80),
        "root_path": "",
    }
    with caplog.at_level("DEBUG"):
        asyncio.run(app(scope, receive, send))  # raises nothing
    assert sent[0]["status"] == 500
    body = json.loads(sent[1]["body"])
    assert body["ok"] is False and body["error"]["type"] == "server_error"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None and "kaput" in errors[0].getMessage()


# ---------------------------------------------------------------------------- last: a shutdown mid-request
def test_shutdown_with_a_request_in_flight_leaves_no_traceback(box: Box, tmp_path: Path) -> None:
    """SIGTERM while a long file is transcribed: uvicorn cancels the request after its grace period; that was
    logged as a CancelledError traceback. Now: a 503 (or the connection closed) and one WARNING line."""
    wav, _ = eval_clip("en_jfk")
    with wave.open(str(wav)) as w:
        params, frames = w.getparams(), w.readframes(w.getnframes())
    long_wav = tmp_path / "long.wav"
    with wave.open(str(long_wav), "wb") as w:
        w.setparams(params)
        w.writeframes(frames * 6)  # 66 s: still transcribing when the 3 s grace period ends

    def post() -> httpx.Response | Exception:
        try:
            files = {"file": ("long.wav", long_wav.read_bytes())}
            return httpx.post(f"{box.url}/v1/audio/transcriptions", files=files, timeout=300)
        except httpx.HTTPError as exc:
            return exc

    uploads = box.d.store / "uploads" / "api"
    stored = len(list(uploads.glob("*.wav")))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post)
        deadline = time.monotonic() + 120
        while len(list(uploads.glob("*.wav"))) == stored and time.monotonic() < deadline:
            time.sleep(0.05)  # until the upload is stored and handed to the engine
        log = box.d.stop()  # asserts: no traceback
        answer = pending.result(timeout=120)
    if isinstance(answer, httpx.Response):
        assert answer.status_code == 503, answer.text[:300]
        assert answer.json()["error"]["message"]
    assert "cut off by the shutdown" in log, log[-2000:]
