"""`asrbox watch` as a subprocess against a real TLS broker with a password (the credentials and TLS set up by
the same code as the daemon's client: daemon.mqtt.client.apply_credentials), and with a CA file that is not a
certificate: one line, exit 78, no traceback."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT, asrbox
from test_security import SECRET, tls_broker, tls_client  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.broker]


def tls_config(tmp_path: Path, port: int, pki: Path, user: str, password: str) -> Path:
    pw = tmp_path / f"{user}_password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    cfg = tmp_path / f"{user}.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "testbox"\nusername = "{user}"\n'
        f'password_file = "{pw}"\ntls_ca = "{pki}/ca.crt"\ntls_cert = "{pki}/client.crt"\n'
        f'tls_key = "{pki}/client.key"\n'
    )
    return cfg


def read_lines(proc: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.put(line)


def test_watch_prints_a_final_over_tls_with_a_password(
    env: dict[str, str],
    tmp_path: Path,
    tls_broker: tuple[int, Path],  # noqa: F811
) -> None:
    port, pki = tls_broker
    box, _ = tls_client(port, pki, "testbox", SECRET, "asrbox/testbox/#")
    final = {"seq": 7, "language": "en", "latency_ms": 321, "text": "hello over TLS", "speaker_name": "Ms Li"}
    box.publish("asrbox/testbox/transcript/final", json.dumps(final), qos=1, retain=True).wait_for_publish(10)
    box.loop_stop()
    box.disconnect()
    e = {**env, "ASRBOX_CONFIG": str(tls_config(tmp_path, port, pki, "display", "display-pw"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "watch"],
        env=e,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(proc, lines), daemon=True).start()
    try:
        line = lines.get(timeout=30)  # the retained final, once watch is connected and subscribed
    except queue.Empty:
        line = "(nothing)"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert line.rstrip("\n") == "[7] (en, 321 ms) Ms Li: hello over TLS", err[-2000:]
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert SECRET not in err and "display-pw" not in err


def test_watch_with_a_ca_that_is_not_a_certificate_says_so_in_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    r = asrbox("watch", env={**env, "ASRBOX_MQTT__TLS_CA": str(bad)}, timeout=60)
    assert r.returncode == 78, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"asrbox: config error: mqtt.tls_ca: {bad} is not a CA certificate (PEM) (NO_CERTIFICATE_OR_CRL_FOUND)"
    ]
