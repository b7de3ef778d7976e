"""`asrbox doctor` as a subprocess: against a real broker (plain, and TLS with a password) beside a running daemon,
a real PortAudio microphone (an ALSA `file` pcm playing speech, or silence), a dead broker, a port held by
something that never answers (no hang), and no microphone at all."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, Broker, eval_clip, free_port
from test_security import SECRET, tls_broker  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.broker]


def doctor(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, dict[str, tuple[str, str]], str]:
    """(exit code, {check: (status, detail)}, stdout) of `asrbox doctor`."""
    r = subprocess.run(
        [sys.executable, "-m", "daemon", "doctor", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in r.stderr, r.stderr
    lines = {}
    for line in r.stdout.splitlines():
        status, name, detail = line.split(None, 2)
        lines[name] = (status, detail)
    return r.returncode, lines, r.stdout


def microphone(tmp_path: Path, pcm: np.ndarray) -> str:
    """A HOME whose ALSA default input plays `pcm` (16 kHz mono s16) through PortAudio."""
    raw = tmp_path / "mic.raw"
    raw.write_bytes(pcm.astype("<i2").tobytes())
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(
        f'pcm.!default {{\n type file\n slave.pcm "null"\n file "/dev/null"\n infile "{raw}"\n format "raw"\n}}\n'
    )
    return str(home)


def speech() -> np.ndarray:
    wav, _ = eval_clip("en_jfk")
    with wave.open(str(wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


@pytest.fixture()
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield int(s.getsockname()[1])
    s.close()


def test_all_ok_beside_a_running_daemon(env: dict[str, str], tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    port = free_port()
    base = {
        **env,
        "ASRBOX_MQTT__HOST": "127.0.0.1",
        "ASRBOX_MQTT__PORT": str(broker.port),
        "ASRBOX_MQTT__DEVICE_ID": "docbox",
        "ASRBOX_STORE__RETENTION_DAYS": "30",
        "ASRBOX_WYOMING__ENABLED": "true",
        "ASRBOX_WYOMING__PORT": str(port),
    }
    # before the daemon runs: the port is free
    e = {**base, "HOME": microphone(tmp_path, speech())}
    rc, lines, out = doctor(e)
    assert lines["wyoming"] == ("ok", f"127.0.0.1:{port} free (the daemon is not running)"), out
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--source", str(eval_clip("en_jfk")[0])],
        env=base,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        deadline = time.monotonic() + 180
        while "Wyoming speech-to-text on" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        began = time.monotonic()
        rc, lines, out = doctor(e)
        took = time.monotonic() - began
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        broker.stop()
    assert rc == 0, out
    assert list(lines) == ["microphone", "model", "engine", "broker", "disk", "clock", "http", "wyoming"], out
    for name in ("microphone", "model", "engine", "broker", "disk", "http", "wyoming"):
        assert lines[name][0] == "ok", out
    assert lines["clock"][0] in ("ok", "warn"), out  # warn: this machine's NTP is off (said, not failed)
    assert "level -" in lines["microphone"][1] and "dBFS" in lines["microphone"][1], out
    assert "sha256 verified" in lines["model"][1] and "connected (anonymous)" in lines["broker"][1], out
    assert "served: Wyoming asrbox (whisper-base-int8)" in lines["wyoming"][1], out
    assert lines["http"] == ("ok", "off")
    assert took < 60, took


def test_tls_broker_with_the_password_and_with_a_wrong_one(
    env: dict[str, str],
    tmp_path: Path,
    tls_broker: tuple[int, Path],  # noqa: F811
) -> None:
    port, pki = tls_broker
    pw = tmp_path / "mqtt_password"
    pw.write_text(SECRET + "\n")
    cfg = tmp_path / "asrbox.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "testbox"\nusername = "testbox"\n'
        f'password_file = "{pw}"\ntls_ca = "{pki}/ca.crt"\ntls_cert = "{pki}/client.crt"\n'
        f'tls_key = "{pki}/client.key"\n'
    )
    e = {**env, "ASRBOX_CONFIG": str(cfg), "ASRBOX_AUDIO__SOURCE": str(eval_clip("en_jfk")[0])}
    _, lines, out = doctor(e)
    assert lines["broker"] == ("ok", f"127.0.0.1:{port} (TLS): connected as 'testbox'"), out
    pw.write_text("not-the-password\n")
    rc, lines, out = doctor(e)
    assert rc == 1 and lines["broker"][0] == "FAIL" and "refused" in lines["broker"][1], out
    assert SECRET not in out and "not-the-password" not in out


def test_dead_broker_silent_microphone_and_a_mute_port_fail_without_hanging(
    env: dict[str, str], tmp_path: Path, silent_listener: int
) -> None:
    e = {
        **env,
        "HOME": microphone(tmp_path, np.zeros(16000 * 5, np.int16)),
        "ASRBOX_MQTT__HOST": "127.0.0.1",
        "ASRBOX_MQTT__PORT": str(free_port()),  # nothing listens
        "ASRBOX_WYOMING__ENABLED": "true",
        "ASRBOX_WYOMING__PORT": str(silent_listener),
    }
    began = time.monotonic()
    rc, lines, out = doctor(e, "--timeout", "3")
    assert rc == 1, out
    assert lines["broker"][0] == "FAIL" and "cannot connect: Connection refused" in lines["broker"][1], out
    assert lines["microphone"][0] == "FAIL" and "only silence" in lines["microphone"][1], out
    assert lines["wyoming"][0] == "FAIL" and "taken by something else" in lines["wyoming"][1], out
    # a broker port that accepts and never answers: a FAIL after the timeout, not a hang
    rc, lines, out = doctor({**e, "ASRBOX_MQTT__PORT": str(silent_listener)}, "--timeout", "3")
    assert lines["broker"][0] == "FAIL" and "no CONNACK within 3 s" in lines["broker"][1], out
    assert time.monotonic() - began < 90


def test_no_microphone_says_so(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    e = {**env, "HOME": str(home), "ASRBOX_MQTT__PORT": str(free_port())}
    r = subprocess.run([sys.executable, "-m", "daemon", "devices"], env=e, cwd=ROOT, capture_output=True, timeout=30)
    if r.returncode == 0:
        pytest.skip("this machine has a microphone")
    rc, lines, out = doctor(e)
    assert rc == 1 and lines["microphone"][0] == "FAIL" and "no microphone found" in lines["microphone"][1], out
