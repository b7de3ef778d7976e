"""The remote engine (`asr.engine = "remote"`) against real servers: another asrbox daemon's /v1 (Whisper base) and
FunASR's own `funasr-server` (a random-weight SenseVoice folder: structure, not words), a box daemon as a
subprocess playing real speech to a real Mosquitto; a server killed mid-run and restarted (nothing lost, nothing
twice, no attempt used up); and the protocol's edges against a scripted stdlib HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, Broker, Recorder, eval_clip, free_port
from http_daemon import HttpDaemon

from daemon.asr.remote import RemoteEngine, RemoteRefused, ServerUnavailable
from daemon.settings import AsrSettings, RemoteSettings
from daemon.transcript import DecodeOptions

sys.path.insert(0, str(ROOT / "scripts"))
import funasr_models

pytestmark = [pytest.mark.model, pytest.mark.broker]

KEY = "asrbox_test_remote_key_9f3c"


# ---------------------------------------------------------------- helpers
def box_env(tmp: Path, cache_dir: Path, broker: Broker, url: str, device: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    env.update(
        ASRBOX_STORE__PATH=str(tmp / device),
        ASRBOX_ASR__CACHE_DIR=str(cache_dir),
        ASRBOX_ASR__ENGINE="remote",
        ASRBOX_ASR__REMOTE__URL=url,
        ASRBOX_MQTT__HOST="127.0.0.1",
        ASRBOX_MQTT__PORT=str(broker.port),
        ASRBOX_MQTT__DEVICE_ID=device,
        ASRBOX_ASR__REMOTE__PARTIALS="false",  # finals only (a fleet's setting), unless a test says otherwise
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_box(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "daemon", "run", *args]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def records(store: Path) -> list[tuple[str, str, int, str | None]]:
    with sqlite3.connect(store / "asrbox.db") as db:
        rows = db.execute("SELECT id, status, attempts, text FROM records WHERE kind='live' ORDER BY rowid").fetchall()
    return [(str(a), str(b), int(c), d) for a, b, c, d in rows]


def finals(rec: Recorder) -> list[dict[str, Any]]:
    return [f for f in rec.payloads("/transcript/final") if isinstance(f, dict)]


def retained_state(rec: Recorder) -> dict[str, Any] | None:
    states = [s for s in rec.payloads("/state") if isinstance(s, dict)]
    return states[-1] if states else None


def wait_exit(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("box did not finish: " + log.read_text()[-3000:]) from None
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    return text


# ---------------------------------------------------------------- servers (one each per module)
@pytest.fixture(scope="module")
def asrbox_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[HttpDaemon]:
    """Another asrbox with its HTTP face on all addresses: an API key is required (reached on 127.0.0.1)."""
    d = HttpDaemon(tmp_path_factory.mktemp("server"), cache_dir, bind="0.0.0.0")
    created = d.asrbox("keys", "create", "fleet")
    assert created.returncode == 0, created.stderr
    key = next(w for w in created.stdout.split() if w.startswith("asrbox_"))
    d.key_file = d.workdir / "key"  # type: ignore[attr-defined]
    d.key_file.write_text(key + "\n")  # type: ignore[attr-defined]
    yield d
    d.stop()


@pytest.fixture(scope="module")
def funasr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """FunASR's own OpenAI-compatible server (funasr-server, console script of funasr 1.4.16) on CPU, offline,
    on a random-weight SenseVoice folder built like a provisioned one."""
    exe = shutil.which("funasr-server", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("funasr-server is not installed (the funasr extra)")
    tmp = tmp_path_factory.mktemp("funasr")
    folder = funasr_models.build_sensevoice(tmp / "SenseVoiceSmall")
    port = free_port()
    log = tmp / "funasr-server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MODELSCOPE_OFFLINE": "1"}
    cmd = [exe, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--model-path", str(folder)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while not _answers(url + "/health"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(30)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status) == 200
    except OSError:
        return False


# ---------------------------------------------------------------- real servers
def test_box_on_asrbox_server_with_key(
    asrbox_server: HttpDaemon, cache_dir: Path, broker: Broker, tmp_path: Path
) -> None:
    """A box with no model of its own: JFK's speech, cut by its VAD, recognized by the other asrbox (key from a
    file), stored and published; the key appears in no log and no command line."""
    wav = eval_clip("en_jfk")[0]
    env = box_env(
        tmp_path, cache_dir, broker, asrbox_server.url, "box1",
        ASRBOX_ASR__REMOTE__API_KEY_FILE=str(asrbox_server.key_file),  # type: ignore[attr-defined]
    )  # fmt: skip
    rec = Recorder(broker.port, "asrbox/box1/#")
    try:
        proc = start_box(env, tmp_path / "box.log", "--source", str(wav), "--speed", "2", "--exit-at-end")
        assert rec.wait_for(lambda m: rec.payloads("/state"), 60)  # running: the engine is built
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        log = wait_exit(proc, tmp_path / "box.log", 120)
        got = finals(rec)
    finally:
        rec.close()
    key = asrbox_server.key_file.read_text().strip()  # type: ignore[attr-defined]
    assert key not in log and key not in asrbox_server.log.read_text()
    assert "libtorch" not in maps  # no torch model on the small box
    rows = records(tmp_path / "box1")
    assert rows and all(status == "done" and attempts == 1 for _, status, attempts, _ in rows), rows
    assert [f["seq"] for f in got] == list(range(1, len(rows) + 1))
    text = " ".join(f["text"] for f in got).lower()
    for word in ("fellow americans", "ask not", "your country"):
        assert word in text, text
    assert all(f["engine"]["name"] == "remote" and f["language"] == "en" for f in got)
    assert "reachable" in log


def test_wrong_key_holds_the_queue_and_uses_no_attempt(
    asrbox_server: HttpDaemon, cache_dir: Path, broker: Broker, tmp_path: Path
) -> None:
    """401 is the box's configuration, not the audio: utterances stay pending with no attempt counted (even with
    max_attempts 1), `state` and diagnostics say the server is unreachable and why."""
    bad = tmp_path / "bad.key"
    bad.write_text("asrbox_wrong\n")
    wav = eval_clip("en_jfk")[0]
    env = box_env(
        tmp_path, cache_dir, broker, asrbox_server.url, "box2",
        ASRBOX_ASR__REMOTE__API_KEY_FILE=str(bad), ASRBOX_ASR__MAX_ATTEMPTS="1",
    )  # fmt: skip
    rec = Recorder(broker.port, "asrbox/box2/#")
    proc = start_box(env, tmp_path / "box.log", "--source", str(wav), "--speed", "4")
    try:

        def held(_: Any) -> bool:
            s = retained_state(rec)
            unavailable = s and (s["reason"] or "").startswith("asr server unavailable")
            return bool(unavailable and s["asr_server"]["reachable"] is False and s["backlog"] >= 1)

        assert rec.wait_for(held, 60), (tmp_path / "box.log").read_text()[-3000:]
        state = retained_state(rec)
        assert state is not None and "401" in state["asr_server"]["error"], state
        assert rec.wait_for(lambda m: [e for e in rec.payloads("/error") if e["code"] == "asr_server_unavailable"], 10)
        assert until(lambda: len(records(tmp_path / "box2")) >= 2, 30)
        assert all(status == "pending" and attempts == 0 for _, status, attempts, _ in records(tmp_path / "box2"))
        assert not finals(rec)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        rec.close()
    log = (tmp_path / "box.log").read_text()
    assert "Traceback" not in log and "asrbox_wrong" not in log
    assert all(status == "pending" for _, status, _, _ in records(tmp_path / "box2"))


def test_box_and_cli_on_funasr_server(funasr_server: str, cache_dir: Path, broker: Broker, tmp_path: Path) -> None:
    """FunASR's server (random weights: the words are noise, the protocol is real): live finals with a language
    code and segment times, and `asrbox transcribe` sending a file's VAD chunks."""
    wav = eval_clip("en_jfk")[0]
    env = box_env(
        tmp_path, cache_dir, broker, funasr_server, "box3",
        ASRBOX_ASR__REMOTE__MODEL="custom", ASRBOX_ASR__REMOTE__PARTIALS="true",
    )  # fmt: skip
    rec = Recorder(broker.port, "asrbox/box3/#")
    try:
        proc = start_box(env, tmp_path / "box.log", "--source", str(wav), "--speed", "4", "--exit-at-end")
        wait_exit(proc, tmp_path / "box.log", 120)
        got = finals(rec)
    finally:
        rec.close()
    rows = records(tmp_path / "box3")
    assert rows and len(got) == len(rows) and all(r[1] == "done" for r in rows), rows
    assert all(f["text"] and f["language"] in ("en", "zh", "ja", "ko", "yue") for f in got), got
    out = subprocess.run(
        [sys.executable, "-m", "daemon", "transcribe", str(wav), "-f", "json", "-o", str(tmp_path / "out")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert doc["text"] and doc["segments"] and doc["segments"][-1]["end"] <= 11.5, doc


def test_server_killed_mid_run_then_back(
    cache_dir: Path, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server dies after the first final: later utterances stay pending (no attempt used: max_attempts 1);
    it comes back on the same port: they drain in order, every final published exactly once, gapless."""
    port = free_port()
    server = server_on(port, tmp_path / "s1", cache_dir, monkeypatch)
    wav = head_of(eval_clip("en_long_concat_hifitts6097")[0], 40.0, tmp_path / "head.wav")
    env = box_env(tmp_path, cache_dir, broker, server.url, "box4", ASRBOX_ASR__MAX_ATTEMPTS="1")
    rec = Recorder(broker.port, "asrbox/box4/#")
    proc = start_box(env, tmp_path / "box.log", "--source", str(wav), "--speed", "3", "--exit-at-end")
    try:
        assert rec.wait_for(lambda m: finals(rec), 60), (tmp_path / "box.log").read_text()[-3000:]
        server.proc.kill()  # no goodbye: connections refused from now on
        server.proc.wait(10)

        def held(_: Any) -> bool:
            s = retained_state(rec)
            return bool(s and s.get("asr_server", {}).get("reachable") is False and s["backlog"] >= 2)

        assert rec.wait_for(held, 60), (tmp_path / "box.log").read_text()[-3000:]
        before = len(finals(rec))
        pending = [r for r in records(tmp_path / "box4") if r[1] == "pending"]
        assert len(pending) >= 2 and sum(r[2] for r in pending) <= 1, pending  # at most the one being tried
        server = server_on(port, tmp_path / "s2", cache_dir, monkeypatch)  # the same port
        wait_exit(proc, tmp_path / "box.log", 180)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    rows = records(tmp_path / "box4")
    assert all(r[1] == "done" for r in rows), rows
    assert rec.wait_for(lambda m: len(finals(rec)) >= len(rows), 10)
    got = finals(rec)
    rec.close()
    assert [f["seq"] for f in got] == list(range(1, len(rows) + 1))  # each once, in order, none missing
    assert [f["id"] for f in got] == [r[0] for r in rows]  # in the order they were spoken
    assert len(got) > before
    assert all(r[2] == 1 for r in rows)  # the outage used no attempt


def server_on(port: int, workdir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> HttpDaemon:
    """An asrbox server on a given port (the box's URL stays the same across a restart)."""
    import http_daemon

    workdir.mkdir(parents=True)
    ports = iter([port])
    with monkeypatch.context() as m:
        m.setattr(http_daemon, "free_port", lambda: next(ports, None) or free_port())
        return HttpDaemon(workdir, cache_dir)


def head_of(wav: Path, seconds: float, dest: Path) -> Path:
    """The first `seconds` of a 16 kHz WAV (a shorter run with the same speech)."""
    import wave

    with wave.open(str(wav), "rb") as r, wave.open(str(dest), "wb") as w:
        w.setparams(r.getparams())
        w.writeframes(r.readframes(int(r.getframerate() * seconds)))
    return dest


def until(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ---------------------------------------------------------------- protocol edges (scripted server)
class Scripted(http.server.ThreadingHTTPServer):
    """Answers each POST with the next scripted (status, body); records what it was sent."""

    def __init__(self) -> None:
        self.script: list[tuple[Any, ...]] = []  # (status, body[, delay_s])
        self.models_status = 200
        self.seen: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(self.server.models_status, {"data": []})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((dict(self.headers), body))
        status, reply, *delay = self.server.script.pop(0)
        time.sleep(delay[0] if delay else 0.0)
        self._send(status, reply)


@pytest.fixture()
def scripted() -> Iterator[Scripted]:
    s = Scripted()
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield s
    s.shutdown()
    s.server_close()


def engine_for(url: str, tmp_path: Path, key: str | None = None) -> RemoteEngine:
    key_file = None
    if key:
        key_file = tmp_path / "key"
        key_file.write_text(key)
    return RemoteEngine(AsrSettings(engine="remote", remote=RemoteSettings(url=url, api_key_file=key_file)))


def test_protocol_edges(scripted: Scripted, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    audio = np.zeros(16000, dtype=np.float32)
    eng = engine_for(scripted.url + "/v1", tmp_path, KEY)
    verbose = {
        "text": "hallo welt",
        "language": "german",
        "segments": [{"start": 0.1, "end": 0.9, "text": "hallo welt"}],
    }
    scripted.script = [(200, verbose)]
    t = eng.transcribe([audio], DecodeOptions(hotwords=("钉钉", "Kubernetes")))[0]
    assert (t.text, t.language, t.segments[0].start) == ("hallo welt", "de", 0.1)
    headers, body = scripted.seen[-1]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert b'name="response_format"\r\n\r\nverbose_json' in body and "钉钉, Kubernetes".encode() in body
    assert b"RIFF" in body and b'name="language"' not in body
    assert eng.server.reachable is True
    # a server without verbose_json: plain json from then on
    scripted.script = [(400, {"error": {"message": "response_format"}}), (200, {"text": "你好"}), (200, {"text": "好"})]
    assert eng.transcribe([audio], DecodeOptions())[0].language == "zh"
    eng.transcribe([audio], DecodeOptions(language="zh"))
    assert b'name="response_format"\r\n\r\njson' in scripted.seen[-1][1]
    # the audio's own failure: a counted attempt
    scripted.script = [(413, {"error": {"message": "too large"}})]
    with pytest.raises(RemoteRefused, match="413"):
        eng.transcribe([audio], DecodeOptions())
    scripted.script = [(500, {"detail": "boom"})]  # the server still answers /v1/models: this audio's failure
    with pytest.raises(RemoteRefused, match="500"):
        eng.transcribe([audio], DecodeOptions())
    # not the audio's fault: the server's state
    scripted.models_status = 503
    scripted.script = [(500, {"detail": "boom"})]
    with pytest.raises(ServerUnavailable):
        eng.transcribe([audio], DecodeOptions())
    scripted.script = [(503, {}), (503, {}), (200, {"text": "ok"})]  # quick retries inside one call
    assert eng.transcribe([audio], DecodeOptions())[0].text == "ok"
    scripted.script = [(429, {})] * 3
    with pytest.raises(ServerUnavailable, match="429"):
        eng.transcribe([audio], DecodeOptions())
    assert eng.server.reachable is False and "429" in (eng.server.error or "")
    assert KEY not in caplog.text


def test_slow_server_keeps_the_worker_alive(
    scripted: Scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy server's answer may take long: the live worker's heartbeat is called while it waits (a slow server
    is not a stalled stage), and the answer is used, not given up and asked for again."""
    import daemon.asr.remote as remote

    monkeypatch.setattr(remote, "WAIT_SLICE_S", 0.1)
    beats: list[float] = []
    eng = engine_for(scripted.url, tmp_path)
    eng.alive = lambda: beats.append(time.monotonic())
    scripted.script = [(200, {"text": "slow but sure"}, 1.0)]
    assert eng.transcribe([np.zeros(1600, dtype=np.float32)], DecodeOptions())[0].text == "slow but sure"
    assert len(beats) >= 5 and len(scripted.seen) == 1
    eng.close()


def test_unreachable_and_bad_settings(tmp_path: Path) -> None:
    port = free_port()  # nothing listens
    eng = engine_for(f"http://127.0.0.1:{port}", tmp_path)
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailable, match="Connection"):
        eng.transcribe([np.zeros(1600, dtype=np.float32)], DecodeOptions())
    assert time.monotonic() - t0 < 5  # refused quickly, two quick retries
    assert eng.server.reachable is False and eng.server.since
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    for extra, words in [
        ({"ASRBOX_ASR__ENGINE": "remote"}, "asr.remote.url is required"),
        ({"ASRBOX_ASR__ENGINE": "remote", "ASRBOX_ASR__REMOTE__URL": "ftp://x"}, "http:// or https://"),
        ({"ASRBOX_ASR__REMOTE__API_KEY_FILE": str(tmp_path / "none")}, "no such file"),
        ({"ASRBOX_ASR__REMOTE__TIMEOUT_S": "0"}, "timeout_s"),
    ]:
        r = subprocess.run(
            [sys.executable, "-m", "daemon", "config", "check"],
            env={**env, **extra}, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 78 and words in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
