"""The daemon as a subprocess with its HTTP face on, for the API and auth tests (one per test module)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
from conftest import ROOT, free_port


def quiet_noise_wav(path: Path, seconds: float = 1.0, amplitude: float = 0.01) -> Path:
    """Faint white noise (about -45 dBFS RMS): the microphone's level moves, the VAD hears no speech."""
    rng = np.random.default_rng(7)
    pcm = (rng.uniform(-amplitude, amplitude, int(16000 * seconds)) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return path


class HttpDaemon:
    def __init__(
        self, workdir: Path, cache_dir: Path, bind: str = "127.0.0.1", source: Path | None = None, **extra: str
    ) -> None:
        self.workdir = workdir
        self.store = workdir / "store"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
        self.env.update(
            ASRBOX_STORE__PATH=str(self.store),
            ASRBOX_ASR__CACHE_DIR=str(cache_dir),
            ASRBOX_HTTP__ENABLED="true",
            ASRBOX_HTTP__BIND=bind,
            ASRBOX_HTTP__PORT=str(self.port),
            ASRBOX_HTTP__PASSWORD_FILE=str(workdir / "admin.pw"),
            ASRBOX_MQTT__HOST="127.0.0.1",
            ASRBOX_MQTT__PORT=str(free_port()),  # no broker: the HTTP face works without one
            ASRBOX_MQTT__DEVICE_ID="httpbox",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(extra)  # may name a broker (ASRBOX_MQTT__PORT) too
        self.log = workdir / "daemon.log"
        noise = source or quiet_noise_wav(workdir / "noise.wav")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--source", str(noise), "--loops", "100000"],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        self._wait_healthy(120)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"daemon not healthy within {timeout} s: {self.log.read_text()[-2000:]}")

    def asrbox(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", *args],
            env={**self.env, **env},
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def stop(self) -> str:
        """SIGTERM; the daemon's log, which must hold no traceback."""
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        log = self.log.read_text()
        assert "Traceback" not in log, log[-3000:]  # every failure a client caused was one line
        return log


def assert_error(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """A refusal in the one error shape, with a clear message (never a traceback)."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert body["ok"] is False
    message = body["error"]["message"]
    assert isinstance(message, str) and message and "Traceback" not in message and "\n" not in message
    for w in words:
        assert w.lower() in message.lower(), (w, message)
    return dict(body["error"])


def raw_http(port: int, request: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """One request on its own connection, as given (targets and headers httpx would re-encode or refuse);
    (status, body)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def wait_job(url: str, job_id: str, timeout: float = 300, until: Any = None) -> dict[str, Any]:
    """The job once `until(job)` holds (default: finished), checked at once, then on each of its events on
    /api/events and on the stream's keepalives (no polling sleep)."""
    import json

    done = until or (lambda j: j["status"] in ("done", "failed", "cancelled"))
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    try:
        with httpx.stream("GET", f"{url}/api/events?types=job", timeout=timeout) as events:
            job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()
            lines = events.iter_lines()
            while not done(job) and time.monotonic() < deadline:
                line = next(lines)
                if not line or (line.startswith("data:") and json.loads(line[5:]).get("job_id") != job_id):
                    continue
                job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()
    except (httpx.ReadTimeout, StopIteration):  # no event within the timeout, or the stream ended
        pass
    if done(job):
        return dict(job)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")
