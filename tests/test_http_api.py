"""The HTTP face against the daemon as a subprocess: the official `openai` client for every response format and
streaming, curl for multipart edge cases, at least 15 bad requests, the live endpoints, /metrics and /docs.

One daemon (loopback: open) serves the whole module; its microphone is a file of faint noise played in a loop.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import eval_clip
from http_daemon import HttpDaemon, assert_error

pytestmark = pytest.mark.model

EN = "en_jfk"
ZH = "zh_aishell1_BAC009S0764W0121"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[HttpDaemon]:
    d = HttpDaemon(tmp_path_factory.mktemp("httpapi"), cache_dir, ASRBOX_HTTP__MAX_UPLOAD_MB="2")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon: HttpDaemon) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{daemon.url}/v1", api_key="not-needed-on-loopback", max_retries=0, timeout=300)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def curl(*args: str) -> tuple[int, dict[str, str], str]:
    """curl -i: (status, headers lower-cased, body)."""
    raw = subprocess.run(["curl", "-s", "-i", "-H", "Expect:", *args], capture_output=True, timeout=300, check=True)
    head, _, body = raw.stdout.decode("utf-8").partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# ---------------------------------------------------------------------------- the openai client
def test_openai_client_every_format_and_stream(client: Any, daemon: HttpDaemon) -> None:
    wav, _ = eval_clip(EN)
    with wav.open("rb") as fh:
        plain = client.audio.transcriptions.create(model="whisper-1", file=fh)
    text = plain.text
    assert "ask not what your country can do for you" in text.lower()

    with wav.open("rb") as fh:
        as_text = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="text")
    assert isinstance(as_text, str) and as_text.strip() == text

    with wav.open("rb") as fh:
        srt = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="srt")
    assert srt.startswith("1\n00:00:0") and " --> " in srt and "ask not" in srt

    with wav.open("rb") as fh:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and "ask not" in vtt

    with wav.open("rb") as fh:
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=fh,
            response_format="verbose_json",
            timestamp_granularities=["segment", "word"],
            language="en",
        )
    assert verbose.text == text and verbose.language == "en"
    assert abs(verbose.duration - wav_seconds(wav)) < 0.05  # audio seconds, not processing time
    assert verbose.segments and verbose.segments[0].id == 0
    for s in verbose.segments:
        assert 0 <= s.start < s.end <= verbose.duration + 0.05
        assert s.compression_ratio > 0 and s.tokens == [] and s.temperature == 0.0
    assert " ".join(s.text for s in verbose.segments) == text
    words = verbose.words or []  # word times from Whisper's cross-attention alignment
    assert [w.word for w in words] == text.split()  # the text's words, each with its time, in order
    assert all(0 <= w.start <= w.end <= verbose.duration + 0.05 for w in words)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert "ask not" in " ".join(w.word for w in words).lower()

    with wav.open("rb") as fh:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=fh, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == text

    models = client.models.list()
    assert [m.id for m in models.data] == ["whisper-base-int8"]


def test_content_types_and_record_keeps_the_upload(daemon: HttpDaemon) -> None:
    wav, _ = eval_clip(EN)
    types = {"json": "application/json", "text": "text/plain", "srt": "text/plain", "vtt": "text/vtt"}
    for fmt, ctype in types.items():
        status, headers, _body = curl(
            "-F", f"file=@{wav}", "-F", f"response_format={fmt}", f"{daemon.url}/v1/audio/transcriptions"
        )
        assert status == 200 and headers["content-type"].startswith(ctype), (fmt, headers)
    rid = headers["x-asrbox-record-id"]
    record = httpx.get(f"{daemon.url}/api/records/{rid}", timeout=30).json()
    record = record.get("record", record)
    assert record["status"] == "done" and record["has_audio"] and "ask not" in record["text"]
    audio = httpx.get(f"{daemon.url}/api/records/{rid}/audio", timeout=30)
    assert audio.status_code == 200 and audio.content == wav.read_bytes()  # the upload plays in the history
    stored = list((daemon.store / "uploads" / "api").iterdir())
    assert all(p.suffix == ".wav" and not p.name.startswith(".") for p in stored)


def test_same_text_as_asrbox_transcribe(daemon: HttpDaemon) -> None:
    """The API and the CLI run the same batch transcriber with the same settings: the same text, exactly."""
    for clip in (EN, ZH):
        wav, _ = eval_clip(clip)
        api = httpx.post(
            f"{daemon.url}/v1/audio/transcriptions",
            files={"file": (wav.name, wav.read_bytes(), "audio/wav")},
            data={"response_format": "text"},
            timeout=300,
        )
        assert api.status_code == 200, api.text
        cli = daemon.asrbox("transcribe", "--no-store", "--no-progress", "-f", "txt", str(wav))
        assert cli.returncode == 0, cli.stderr
        assert api.text == cli.stdout and api.text.strip(), (clip, api.text, cli.stdout)


def test_prompt_terms_are_hotwords(daemon: HttpDaemon) -> None:
    from daemon.http.openai_api import split_terms

    assert split_terms("Leadbeater, astral plane\nKubernetes；小米、华为") == (
        "Leadbeater",
        "astral plane",
        "Kubernetes",
        "小米",
        "华为",
    )
    assert split_terms("The following is a lecture about the astral plane and its inhabitants.") == ()


# ---------------------------------------------------------------------------- bad requests
def _raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_bad_requests_get_clear_4xx(daemon: HttpDaemon, tmp_path: Path) -> None:
    wav, _ = eval_clip(EN)
    u = f"{daemon.url}/v1/audio/transcriptions"
    before = httpx.get(f"{daemon.url}/api/records?limit=100", timeout=30).json()["items"]
    text_file = tmp_path / "notes.wav"
    text_file.write_text("this is not audio\n" * 50)
    (tmp_path / "empty.wav").write_bytes(b"")
    big = tmp_path / "big.wav"
    big.write_bytes(wav.read_bytes()[:44] + bytes(3 * 1024 * 1024))  # over the module's 2 MB limit

    def post(**kw: Any) -> httpx.Response:
        return httpx.post(u, timeout=120, **kw)

    audio = {"file": ("a.wav", wav.read_bytes(), "audio/wav")}
    cases: list[tuple[str, httpx.Response, int, tuple[str, ...]]] = [
        ("no file", post(data={"model": "whisper-1"}, files={"x": ("", b"", "text/plain")}), 400, ("file", "missing")),
        ("empty file", post(files={"file": ("empty.wav", b"", "audio/wav")}), 400, ("empty",)),
        ("not audio", post(files={"file": ("notes.wav", text_file.read_bytes(), "audio/wav")}), 400, ("audio",)),
        ("temperature type", post(files=audio, data={"temperature": "hot"}), 400, ("temperature", "number")),
        ("temperature range", post(files=audio, data={"temperature": "3"}), 400, ("temperature",)),
        ("unknown format", post(files=audio, data={"response_format": "xml"}), 400, ("response_format", "xml")),
        ("stream type", post(files=audio, data={"stream": "maybe"}), 400, ("stream",)),
        ("itn type", post(files=audio, data={"itn": "2"}), 400, ("itn",)),
        ("language", post(files=audio, data={"language": "english!!"}), 400, ("language",)),
        ("granularity", post(files=audio, data={"timestamp_granularities[]": "char"}), 400, ("timestamp",)),
        (
            "two files",
            post(files=[("file", ("a.wav", b"RIFF", "audio/wav")), ("file", ("b.wav", b"RIFF", "audio/wav"))]),
            400,
            ("one file",),
        ),
        ("not multipart", post(json={"file": "a.wav"}), 415, ("multipart",)),
        ("oversize", post(files={"file": ("big.wav", big.read_bytes(), "audio/wav")}), 413, ("limit",)),
        ("hotwords type", httpx.put(f"{daemon.url}/api/hotwords", json={"terms": "one"}, timeout=30), 422, ("terms",)),
        (
            "hotword control char",
            httpx.put(f"{daemon.url}/api/hotwords", json={"terms": ["a\u202eb"]}, timeout=30),
            400,
            ("terms[0]",),
        ),
        ("listening type", httpx.post(f"{daemon.url}/api/listening", json={"on": "perhaps"}, timeout=30), 422, ("on",)),
        ("event type", httpx.get(f"{daemon.url}/api/events?types=bogus", timeout=30), 400, ("bogus",)),
        ("unknown route", httpx.get(f"{daemon.url}/v1/nothing", timeout=30), 404, ()),
    ]
    for name, response, status, words in cases:
        try:
            assert_error(response, status, *words)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None

    # a truncated multipart body (curl cannot send one): 400, and no half-written upload is left
    body = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF....'
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    status, err = _raw_request(daemon.port, head, body)
    assert status == 400 and "malformed" in err["error"]["message"]
    # an upload that would cross the free-space floor: 507 before a byte is stored
    huge = shutil.disk_usage(daemon.store).free
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {huge}\r\nConnection: close\r\n\r\n"
    )
    status, err = _raw_request(daemon.port, head)
    assert status == 507 and "space" in err["error"]["message"]

    # a name that climbs folders is refused; any other path in a name is only a display name: stored under
    # uploads/api with our own name
    status, _, body = curl("-F", f"file=@{wav};filename=../../../../tmp/evil.wav", u)
    assert status == 400 and "climb" in json.loads(body)["error"]["message"]
    status, headers, _ = curl("-F", f"file=@{wav};filename=some/folder/evil.wav", u)
    assert status == 200
    record = httpx.get(f"{daemon.url}/api/records/{headers['x-asrbox-record-id']}", timeout=30).json()
    record = record.get("record", record)
    assert "/" not in record["source"] and record["source"].endswith("evil.wav")
    assert not Path("/tmp/evil.wav").exists()

    leftovers = [p.name for p in (daemon.store / "uploads" / "api").iterdir() if p.name.startswith(".part")]
    assert leftovers == []
    after = {r["id"] for r in httpx.get(f"{daemon.url}/api/records?limit=100", timeout=30).json()["items"]}
    assert {r["id"] for r in before} <= after  # nothing stored was lost
    assert httpx.get(f"{daemon.url}/health", timeout=30).json()["ok"] is True


# ---------------------------------------------------------------------------- live endpoints
def test_live_state_status_hotwords_events(daemon: HttpDaemon) -> None:
    u = daemon.url
    state = httpx.get(f"{u}/api/state", timeout=30).json()
    assert state["ok"] and state["state"] in ("listening", "idle", "error")
    diag = httpx.get(f"{u}/api/diagnostics", timeout=30).json()
    assert {"backlog", "outbox", "dropped_frames", "finals"} <= set(diag)
    status = httpx.get(f"{u}/api/status", timeout=30).json()
    assert status["engine"]["model"] == "whisper-base-int8" and status["mqtt"]["connected"] is False
    assert status["http"]["auth"] == "open" and status["settings"]["mqtt"]["password"] == ""
    assert status["disk"]["free_mb"] > 0

    with httpx.stream("GET", f"{u}/api/events?types=state,level,session", timeout=60) as events:
        lines = events.iter_lines()
        seen = _next_event(lines, "state")
        level = _next_event(lines, "level")
        assert -60 < level["rms_db"] < -35 and level["rms_db"] < level["peak_db"] <= -35  # faint noise
        off = httpx.post(f"{u}/api/listening", json={"on": False}, timeout=60).json()
        assert off["ok"] and off["listening"] is False
        stopped = _next_event(lines, "session")
        assert stopped["event"] == "stopped" and stopped["session_id"] == seen["session_id"]
        assert _next_event(lines, "state", lambda e: e["state"] == "idle")["state"] == "idle"
        on = httpx.post(f"{u}/api/listening", json={"on": True}, timeout=60).json()
        assert on["listening"] is True and on["session_id"] and on["session_id"] != seen.get("session_id")
        started = _next_event(lines, "session")
        assert started["event"] == "started" and started["session_id"] == on["session_id"]

    put = httpx.put(f"{u}/api/hotwords", json={"terms": [" Leadbeater ", "astral plane", "Leadbeater"]}, timeout=30)
    assert put.json()["terms"] == ["Leadbeater", "astral plane"]
    got = httpx.get(f"{u}/api/hotwords", timeout=30).json()
    assert got["layers"]["box"] == ["Leadbeater", "astral plane"] and got["layers"]["config"] == []
    assert (daemon.store / "hotwords.txt").read_text(encoding="utf-8") == "Leadbeater\nastral plane\n"
    assert httpx.put(f"{u}/api/hotwords", json={"terms": []}, timeout=30).json()["terms"] == []


def _next_event(lines: Iterator[str], kind: str, pred: Any = None) -> dict[str, Any]:
    current = None
    for line in lines:
        if line.startswith("event: "):
            current = line[7:]
        elif line.startswith("data: ") and current == kind:
            data: dict[str, Any] = json.loads(line[6:])
            if pred is None or pred(data):
                return data
    raise AssertionError(f"the stream ended before a {kind} event")


def test_metrics_docs_openapi(daemon: HttpDaemon) -> None:
    u = daemon.url
    metrics = httpx.get(f"{u}/metrics", timeout=30)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "asrbox_finals_total",
        "asrbox_backlog ",
        "asrbox_dropped_frames_total",
        'asrbox_final_latency_seconds_bucket{le="+Inf"}',
        'asrbox_jobs{status="queued"}',
        "asrbox_resident_memory_bytes",
        "process_resident_memory_bytes",
    ):
        assert name in metrics.text, name
    docs = httpx.get(f"{u}/docs", timeout=30).text
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"):
        assert httpx.get(f"{u}/static/swagger/{asset}", timeout=30).status_code == 200
    schema = httpx.get(f"{u}/openapi.json", timeout=30).json()
    assert "/v1/audio/transcriptions" in schema["paths"] and "/api/hotwords" in schema["paths"]


def test_client_gone_stops_its_transcription(daemon: HttpDaemon, tmp_path: Path) -> None:
    """A client that gives up (a timeout, a retry) must not leave the box decoding its file for nobody: the next
    window is not decoded; the record says why. (150 s of speech at 8 kHz, 8 bit: 5 chunks, 2 engine calls.)"""
    import numpy as np

    wav, _ = eval_clip(EN)
    with wave.open(str(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")[::2]  # 8 kHz
    u8 = ((np.tile(pcm, -(-150 * 8000 // pcm.size))[: 150 * 8000].astype(np.int32) >> 8) + 128).astype(np.uint8)
    long_wav = tmp_path / "long.wav"
    with wave.open(str(long_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(u8.tobytes())
    boundary = "asrboxgone"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="gone.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + long_wav.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as s:
        s.sendall(head + body)
    deadline = time.monotonic() + 240
    record = None
    while time.monotonic() < deadline and record is None:
        items = httpx.get(f"{daemon.url}/api/records", params={"source": "file", "limit": 50}, timeout=30).json()
        record = next((r for r in items["items"] if r["source"] == "gone.wav" and r["status"] != "pending"), None)
        time.sleep(0.2)
    assert record is not None, "no record of the abandoned upload"
    assert record["status"] == "failed" and "client went away" in (record["error"] or ""), record
    assert "the client went away" in daemon.log.read_text(errors="replace")
