"""TLS with client certificates, username/password and an ACL on a real Mosquitto; secrets never leak."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port
from test_daemon import start_daemon

SECRET = "s3cret-Passw0rd-for-testbox"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=asrbox-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        extra = ["-extfile", "san.ext"] if name == "server" else []
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            *extra,
            cwd=d,
        )


def listening_inodes() -> set[str]:
    out = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in Path(f).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A":  # LISTEN
                    out.add(parts[9])
        except OSError:
            pass
    return out


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


@pytest.fixture()
def tls_broker(tmp_path: Path) -> Any:
    if not shutil.which("openssl"):
        pytest.fail("openssl missing")
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "testbox", SECRET], check=True, timeout=30)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "display", "display-pw"], check=True, timeout=30)
    acl = ROOT / "config" / "mosquitto" / "asrbox.acl"
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(
        f"per_listener_settings false\nallow_anonymous false\npassword_file {passwd}\nacl_file {acl}\nuser root\n"
        f"listener {port} 127.0.0.1\ncafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
        "require_certificate true\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket
    import time

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port, pki
    proc.terminate()
    proc.wait(10)


class Inbox(list[tuple[str, bytes]]):
    """Messages as they arrive (topic, payload); `wait` blocks until a condition on them holds."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Condition()

    def add(self, topic: str, payload: bytes) -> None:
        with self.arrived:
            self.append((topic, payload))
            self.arrived.notify_all()

    def wait(self, pred: Any, timeout: float) -> bool:
        with self.arrived:
            return bool(self.arrived.wait_for(lambda: pred(self), timeout))


def tls_client(port: int, pki: Path, user: str, password: str, topic: str) -> tuple[Any, Inbox]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got = Inbox()
    ready = threading.Event()
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / "client.crt"), keyfile=str(pki / "client.key"))
    c.on_connect = lambda cl, u, f, r, p: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda cl, u, m, r, p: ready.set()
    c.on_message = lambda cl, u, m: got.add(m.topic, bytes(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c, got


def test_tls_credentials_acl_and_no_leaks(tls_broker: Any, env: dict[str, str], tmp_path: Path) -> None:

    from test_daemon import eval_clip

    port, pki = tls_broker
    pw = tmp_path / "mqtt_password"
    pw.write_text(SECRET + "\n")
    pw.chmod(0o600)
    cfg = tmp_path / "asrbox.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "testbox"\nusername = "testbox"\n'
        f'password_file = "{pw}"\ntls_ca = "{pki}/ca.crt"\ntls_cert = "{pki}/client.crt"\n'
        f'tls_key = "{pki}/client.key"\n'
    )
    e = {**env, "ASRBOX_CONFIG": str(cfg)}
    display, got = tls_client(port, pki, "display", "display-pw", "asrbox/#")
    log = tmp_path / "d.log"
    proc = start_daemon({**e, "ASRBOX_LOG__LEVEL": "DEBUG"}, "--source", str(eval_clip("en_jfk")[0]), log=log)
    try:
        assert got.wait(lambda m: any(t.endswith("/transcript/final") for t, _ in m), 90), log.read_text()[-2000:]
        assert ("asrbox/testbox/status", b"online") in got
        # the daemon opens no listening socket
        assert not (socket_inodes(proc.pid) & listening_inodes())
        # the password is not on its command line
        assert SECRET not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert SECRET not in log.read_text()
    r = subprocess.run(
        [sys.executable, "-m", "daemon", "config", "show"], env=e, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and SECRET not in r.stdout + r.stderr
    assert json.loads(r.stdout)["mqtt"]["password"] == "********"

    # the ACL confines the box's identity to its own subtree
    intruder, _ = tls_client(port, pki, "testbox", SECRET, "asrbox/testbox/#")
    intruder.publish("asrbox/otherbox/transcript/final", b"forged", qos=1).wait_for_publish(5)
    intruder.publish("asrbox/testbox/diagnostics", b"mine", qos=1).wait_for_publish(5)
    # the allowed message was published after the forged one on the same connection: once it has arrived, the
    # forged one would have arrived too, had the broker let it through
    assert got.wait(lambda m: ("asrbox/testbox/diagnostics", b"mine") in m, 10)
    topics = [t for t, _ in got]
    assert "asrbox/otherbox/transcript/final" not in topics and "asrbox/testbox/diagnostics" in topics
    # and a wrong password or a missing client certificate is refused
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    bad = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    bad.username_pw_set("testbox", "wrong")
    bad.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / "client.crt"), keyfile=str(pki / "client.key"))
    refused = threading.Event()
    bad.on_connect = lambda cl, u, f, r, p: refused.set() if r.is_failure else None
    bad.connect("127.0.0.1", port)
    bad.loop_start()
    assert refused.wait(10)
    bad.loop_stop()
    for c in (display, intruder):
        c.loop_stop()
        c.disconnect()
