"""Jobs over HTTP against the daemon as a subprocess: a 20-file job survives SIGKILL (each file recorded once, the
same text as `asrbox transcribe`), a 2 GB upload streams to disk with bounded memory, the free-space floor and
bad requests are refused with 4xx/507 JSON and nothing stored is lost."""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EVAL, ROOT, Broker, asrbox, eval_rows, free_port
from http_daemon import wait_job

pytestmark = [pytest.mark.model, pytest.mark.broker]

GB = 1024**3
START_S = 180.0


class Daemon:
    """One daemon at a time on a fixed port and store; restarted when a test needs other settings."""

    def __init__(self, workdir: Path, env: dict[str, str], broker: Broker) -> None:
        self.workdir = workdir
        self.store = workdir / "store"
        self.port = free_port()
        self.env = {
            **env,
            "ASRBOX_STORE__PATH": str(self.store),
            "ASRBOX_MQTT__PORT": str(broker.port),
            "ASRBOX_MQTT__HOST": "127.0.0.1",
            "ASRBOX_HTTP__ENABLED": "true",
            "ASRBOX_HTTP__PORT": str(self.port),
            "ASRBOX_SESSION__LISTEN_ON_START": "false",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, str] = {}
        self.starts = 0

    def ensure(self, **settings: str) -> Daemon:
        if self.proc is None or self.proc.poll() is not None or settings != self.settings:
            self.stop()
            self.start(**settings)
        return self

    def start(self, **settings: str) -> None:
        self.starts += 1
        self.settings = settings
        log = self.workdir / f"daemon{self.starts}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--source", str(EVAL / "en" / "en_sphinx_cards_001.wav")],
            env={**self.env, **settings},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(OSError):
                if self.call("GET", "/api/jobs?limit=1")[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("the daemon's HTTP face did not come up: " + log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.proc = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def call(
        self, method: str, path: str, body: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, _, body = self.call(method, path, **kw)
        return status, json.loads(body)

    def post_files(self, path: str, files: list[tuple[str, bytes]], **fields: str) -> tuple[int, Any]:
        body, ctype = multipart(files, fields)
        return self.json("POST", path, body=body, headers={"Content-Type": ctype})

    def wait_job(self, job_id: str, pred: Any, timeout: float) -> dict[str, Any]:
        """Until `pred(job)`, on the job's events (http_daemon.wait_job)."""
        return wait_job(f"http://127.0.0.1:{self.port}", job_id, timeout, pred)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.store / 'asrbox.db'}?mode=ro", uri=True)


BOUNDARY = "asrboxtest" + uuid.uuid4().hex


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for name, data in files:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        out.write(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={BOUNDARY}"


def wav_header(data_bytes: int, rate: int = 16000) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def clips(n: int) -> list[Path]:
    rows = sorted((r for r in eval_rows() if r["duration_s"] <= 8), key=lambda r: r["duration_s"])
    assert len(rows) >= n
    return [EVAL / r["path"] for r in rows[:n]]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("jobs")
    broker = Broker(workdir)
    broker.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    env.update(ASRBOX_ASR__CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    d = Daemon(workdir, env, broker)
    yield d
    d.stop()
    broker.stop()


def cli_texts(files: list[Path], cache_dir: Path, workdir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    env.update(ASRBOX_ASR__CACHE_DIR=str(cache_dir), ASRBOX_STORE__PATH=str(workdir / "cli-store"))
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "transcribe", "--no-store", "--no-progress", "-f", "json", *map(str, files)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---------------------------------------------------------------------------- crash and resume
def test_job_survives_sigkill_each_file_once_same_text_as_cli(daemon: Daemon, cache_dir: Path) -> None:
    files = clips(20)
    cli = cli_texts(files, cache_dir, daemon.workdir)  # the baseline runs alongside
    d = daemon.ensure()
    status, body = d.post_files("/api/jobs", [(f.name, f.read_bytes()) for f in files], name="twenty")
    assert status == 201, body
    job_id = body["job"]["id"]
    assert body["job"]["files_total"] == 20 and [f["name"] for f in body["job"]["files"]] == [f.name for f in files]
    d.wait_job(job_id, lambda j: j["files_done"] >= 3, 300)
    d.kill()  # in the middle of the job: a file is in the job thread's hands
    with contextlib.closing(d.db()) as db:
        done_before = db.execute("SELECT COUNT(*) FROM job_files WHERE status='done'").fetchone()[0]
    assert 3 <= done_before < 20
    d.start()
    job = d.wait_job(job_id, lambda j: j["status"] in ("done", "failed", "cancelled"), 600)
    assert job["status"] == "done" and job["files_done"] == 20 and job["files_failed"] == 0, job
    rids = [f["record_id"] for f in job["files"]]
    assert all(f["status"] == "done" and f["progress"] == 1.0 for f in job["files"])
    assert len(set(rids)) == 20 and None not in rids
    with contextlib.closing(d.db()) as db:
        recorded = db.execute(
            "SELECT COUNT(*) FROM records WHERE audio_path LIKE ?", (f"uploads/{job_id}/%",)
        ).fetchone()[0]
    assert recorded == 20  # each file recorded exactly once, the interrupted one included
    out, err = cli.communicate(timeout=600)
    assert cli.returncode == 0, err[-2000:]
    expected = {Path(x["file"]).name: x["text"] for x in map(json.loads, out.splitlines())}
    for f in job["files"]:
        status, _, body = d.call("GET", f"/api/jobs/{job_id}/files/{f['idx']}/result?format=txt")
        assert status == 200
        assert body.decode().rstrip("\n") == expected[f["name"]], f["name"]
    # the whole batch in one CSV, UTF-8 with a BOM (Excel), and in a zip
    status, headers, body = d.call("GET", f"/api/jobs/{job_id}/results.csv")
    assert status == 200 and headers["content-type"].startswith("text/csv") and body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["file", "start", "end", "text"] and {r[0] for r in rows[1:]} == set(expected)
    status, _, body = d.call("GET", f"/api/jobs/{job_id}/results.zip?format=srt")
    assert status == 200 and len(zipfile.ZipFile(io.BytesIO(body)).namelist()) == 20


def test_cli_one_csv_for_a_batch(tmp_path: Path, env: dict[str, str]) -> None:
    files = clips(2)
    out = tmp_path / "all.csv"
    r = asrbox("transcribe", "--no-store", "--no-progress", "--csv-file", str(out), *map(str, files), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # the CSV replaces the documents on stdout
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["file", "start", "end", "text"]
    assert [Path(r[0]).name for r in rows[1:]] == [f.name for f in files]  # one segment each, in order
    assert all(r[3] for r in rows[1:])


# ---------------------------------------------------------------------------- big uploads, the floor
def _stream_wav(d: Daemon, total: int) -> tuple[int, Any]:
    """POST a job whose one file is a WAV header + zeros of `total` bytes, generated on the fly."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="hold"\r\n\r\ntrue\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + wav_header(total - 44)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    zeros = bytes(1024 * 1024)

    def body() -> Iterator[bytes]:
        yield head
        left = total - 44
        while left > 0:
            n = min(left, len(zeros))
            yield zeros if n == len(zeros) else zeros[:n]
            left -= n
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300)
    try:
        conn.putrequest("POST", "/api/jobs")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(len(head) + total - 44 + len(tail)))
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a refusal may come before the end
            for chunk in body():
                conn.send(chunk)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_2gb_upload_streams_to_disk_with_bounded_memory(daemon: Daemon) -> None:
    d = daemon.ensure()
    base = d.rss_mb()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], d.rss_mb())
            stop.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        status, body = _stream_wav(d, 2 * GB)
    finally:
        stop.set()
        t.join()
    assert status == 201, body
    job = body["job"]
    assert job["status"] == "held" and job["files"][0]["bytes"] == 2 * GB
    stored = d.store / "uploads" / job["id"] / "0.wav"
    assert stored.stat().st_size == 2 * GB
    assert peak[0] - base < 200, f"RSS grew {peak[0] - base:.0f} MB during a 2 GB upload"
    assert d.json("DELETE", f"/api/jobs/{job['id']}")[0] == 200
    assert not stored.exists() and not stored.parent.exists()


def test_upload_crossing_the_free_space_floor_is_refused_507(daemon: Daemon) -> None:
    d = daemon.ensure(ASRBOX_STORE__MIN_FREE_MB=str(10**9))
    with contextlib.closing(d.db()) as db:
        jobs_before = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    wav = (EVAL / "en" / "en_sphinx_cards_001.wav").read_bytes()
    status, body = d.post_files("/api/jobs", [("a.wav", wav)])
    assert status == 507 and body["ok"] is False and "free space" in body["error"]["message"]
    status, body = _stream_wav(d, 64 * 1024 * 1024)  # refused before the body is read
    assert status == 507, body
    with contextlib.closing(d.db()) as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == jobs_before
    assert not list(d.store.glob("uploads/*/.part-*"))


# ---------------------------------------------------------------------------- bad requests
def test_bad_requests_get_4xx_json_and_nothing_stored_is_lost(daemon: Daemon) -> None:
    d = daemon.ensure(ASRBOX_HTTP__MAX_UPLOAD_MB="1")
    wav = (EVAL / "en" / "en_sphinx_cards_001.wav").read_bytes()
    status, body = d.post_files("/api/jobs", [("keep.wav", wav)], hold="true", name="keep")
    assert status == 201
    keep = body["job"]["id"]
    before = sorted(p.name for p in (d.store / "uploads").rglob("*"))

    def refused(expect: int, status: int, body: Any) -> None:
        assert status == expect, body
        assert body["ok"] is False and body["error"]["message"] and "Traceback" not in json.dumps(body)

    refused(400, *d.post_files("/api/jobs", [], name="no file"))
    refused(400, *d.post_files("/api/jobs", [("empty.wav", b"")]))
    refused(415, *d.post_files("/api/jobs", [("notes.wav", b"just some text, not audio\n" * 50)]))
    refused(415, *d.post_files("/api/jobs", [("ok.wav", wav), ("notes.txt", b"hello")]))  # one bad: all refused
    refused(413, *d.post_files("/api/jobs", [("big.wav", wav_header(2 * 1024 * 1024) + bytes(2 * 1024 * 1024))]))
    refused(400, *d.post_files("/api/jobs", [("a.wav", wav)], language="english; drop table"))
    refused(400, *d.post_files("/api/jobs", [("a.wav", wav)], language="zz"))  # a language the model does not know
    refused(400, *d.post_files("/api/jobs", [("a.wav", wav)], itn="maybe"))
    refused(415, *d.json("POST", "/api/jobs", body=b'{"file": "x"}', headers={"Content-Type": "application/json"}))
    good, ctype = multipart([("a.wav", wav)], {})
    refused(400, *d.json("POST", "/api/jobs", body=good[: len(good) // 2], headers={"Content-Type": ctype}))
    refused(404, *d.json("GET", "/api/jobs/nope"))
    refused(404, *d.json("POST", "/api/jobs/nope/cancel"))
    refused(404, *d.json("DELETE", "/api/jobs/nope"))
    refused(404, *d.post_files("/api/jobs/nope/files", [("a.wav", wav)]))
    refused(404, *d.json("GET", f"/api/jobs/{keep}/files/7/result"))
    refused(400, *d.json("GET", f"/api/jobs/{keep}/files/0/result?format=docx"))
    refused(409, *d.json("GET", f"/api/jobs/{keep}/files/0/result?format=txt"))  # held: no result yet
    refused(422, *d.json("GET", "/api/jobs?limit=0"))
    # a name that climbs folders is refused; control and bidi characters in a name: shown cleaned, stored where
    # we say
    refused(400, *d.post_files("/api/jobs", [("../../../etc/evil.wav", wav)], hold="true"))
    status, body = d.post_files("/api/jobs", [("uploads/\u202eevil\x07name.wav", wav)], hold="true")
    assert status == 201, body
    other = body["job"]
    assert other["files"][0]["name"] == "evilname.wav"
    assert (d.store / "uploads" / other["id"] / "0.wav").is_file()
    assert d.json("POST", f"/api/jobs/{other['id']}/cancel")[0] == 200
    refused(409, *d.json("POST", f"/api/jobs/{other['id']}/cancel"))  # twice
    refused(409, *d.json("POST", f"/api/jobs/{other['id']}/start"))  # cancelled, not held
    refused(409, *d.post_files(f"/api/jobs/{other['id']}/files", [("b.wav", wav)]))
    # nothing stored was lost or left behind: the kept job is whole, no temporary or refused upload remains
    status, job = d.json("GET", f"/api/jobs/{keep}")
    assert status == 200 and job["status"] == "held" and [f["name"] for f in job["files"]] == ["keep.wav"]
    after = sorted(p.name for p in (d.store / "uploads").rglob("*") if other["id"] not in str(p))
    assert after == before
    # more files, then start: the held job runs
    # more files, then start: the held job runs; a file that cannot be transcribed fails alone, with its reason
    short = wav_header(64) + bytes(64)
    status, body = d.post_files(f"/api/jobs/{keep}/files", [("more.wav", wav), ("short.wav", short)])
    assert status == 200 and [f["idx"] for f in body["job"]["files"]] == [0, 1, 2]
    assert d.json("POST", f"/api/jobs/{keep}/start")[0] == 200
    refused(409, *d.json("POST", f"/api/jobs/{keep}/start"))
    job = d.wait_job(keep, lambda j: j["status"] == "done", 300)
    assert [f["status"] for f in job["files"]] == ["done", "done", "failed"], job
    assert "too short" in job["files"][2]["error"] and str(d.store) not in job["files"][2]["error"]
    refused(409, *d.json("GET", f"/api/jobs/{keep}/files/2/result"))


# ---------------------------------------------------------------------------- cancel, shutdown
def test_cancel_and_shutdown_stop_after_the_current_window(daemon: Daemon) -> None:
    d = daemon.ensure(ASRBOX_ASR__BATCH_SIZE="1")  # one 30 s window per engine call: three for this file
    long = (EVAL / "en" / "en_long_concat_hifitts6097.wav").read_bytes()
    status, body = d.post_files("/api/jobs", [("long.wav", long)])
    assert status == 201
    job_id = body["job"]["id"]
    d.wait_job(job_id, lambda j: j["files"][0]["progress"] > 0, 300)  # a window is done, more to come
    assert d.json("POST", f"/api/jobs/{job_id}/cancel")[0] == 200
    job = d.wait_job(job_id, lambda j: j["files"][0]["status"] != "running", 5)
    assert (
        job["status"] == "cancelled" and job["files"][0]["status"] == "cancelled" and not job["files"][0]["record_id"]
    )
    # the daemon is free again: the next job starts while no record was written for the cancelled file
    status, body = d.post_files("/api/jobs", [("long.wav", long)])
    second = body["job"]["id"]
    d.wait_job(second, lambda j: j["files"][0]["progress"] > 0, 300)
    with contextlib.closing(d.db()) as db:
        assert (
            db.execute("SELECT COUNT(*) FROM records WHERE audio_path LIKE ?", (f"uploads/{job_id}/%",)).fetchone()[0]
            == 0
        )
    # SIGTERM with a file in hand: abandoned, back in the queue, no failed record
    d.stop()
    with contextlib.closing(d.db()) as db:
        row = db.execute("SELECT status, progress, record_id FROM job_files WHERE job_id=?", (second,)).fetchone()
        recorded = db.execute("SELECT COUNT(*) FROM records WHERE audio_path LIKE ?", (f"uploads/{second}/%",))
        assert row == ("queued", 0, None) and recorded.fetchone()[0] == 0
    d.ensure(ASRBOX_ASR__BATCH_SIZE="1")
    assert d.json("DELETE", f"/api/jobs/{second}")[0] == 200
