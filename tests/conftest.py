from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.audio.decode import SAMPLE_RATE, decode_file

ROOT = Path(__file__).resolve().parent.parent
EVAL = Path(os.environ.get("ASRBOX_EVAL_DIR", ROOT.parent / "shared" / "eval"))


def eval_rows() -> list[dict[str, Any]]:
    manifest = EVAL / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"evaluation speech not found at {EVAL}")
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def eval_clip(clip_id: str) -> tuple[Path, dict[str, Any]]:
    for r in eval_rows():
        if r["id"] == clip_id:
            return EVAL / r["path"], r
    raise KeyError(clip_id)


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """`audio` (float, 16 kHz mono) as a 16-bit PCM WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def join_clips(clips: Sequence[str], pauses: Sequence[float]) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """A test meeting: the eval clips one after another (16 kHz), 0.5 s of silence first and `pauses[i]` s of
    faint noise after clip i; and where each clip lies (start s, end s, clip id)."""
    rng = np.random.default_rng(0)
    parts, spans, at = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)], [], 0.5
    for clip, pause in zip(clips, pauses, strict=True):
        audio = decode_file(eval_clip(clip)[0])
        parts.append(audio)
        spans.append((at, at + audio.size / SAMPLE_RATE, clip))
        at += audio.size / SAMPLE_RATE + pause
        parts.append((rng.standard_normal(int(pause * SAMPLE_RATE)) * 0.001).astype(np.float32))
    return np.concatenate(parts), spans


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache shared by the session (the real embedded model is assembled once)."""
    env = os.environ.get("ASRBOX_TEST_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def speaker_models(cache_dir: Path) -> Path:
    """The speaker models, converted once into the session's cache (kept across runs with ASRBOX_TEST_CACHE)
    from the wheel scripts/setup downloaded (needs torch: the funasr extra)."""
    from daemon.speakers.models import problems

    target = cache_dir / "speakers"
    if problems(target):
        pytest.importorskip("torch")
        from daemon.speakers.provision import prepare

        prepare(target)
    return target


@pytest.fixture()
def env(tmp_path: Path, cache_dir: Path) -> dict[str, str]:
    """Environment for running `asrbox` as a subprocess against a private store and the shared cache."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    e.update(
        ASRBOX_STORE__PATH=str(tmp_path / "store"),
        ASRBOX_ASR__CACHE_DIR=str(cache_dir),
        PYTHONUNBUFFERED="1",
    )
    return e


def asrbox(*args: str, env: dict[str, str], timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )


@pytest.fixture(scope="session")
def engine(cache_dir: Path) -> Iterator[Any]:
    from daemon.asr.engine import load_engine
    from daemon.settings import AsrSettings

    e = load_engine(AsrSettings(cache_dir=cache_dir))
    yield e
    e.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A real Mosquitto on a free loopback port; stop/start keep the port (broker outage tests)."""

    def __init__(self, workdir: Path, extra: str = "", persistent: bool = False) -> None:
        import shutil as _sh

        exe = _sh.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("mosquitto is not installed (scripts/setup installs it)")
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        persistence = f"persistence true\npersistence_location {workdir}/\n" if persistent else "persistence false\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{persistence}user root\n{extra}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    def start(self) -> None:
        import socket
        import time

        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start: " + self.log.read_text())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Recorder:
    """A paho subscriber that records every message under a topic filter.

    `messages[i]` is (topic, payload, retained); `arrivals[i]` is its time.monotonic() on arrival and `dups[i]`
    its DUP flag (set only when the broker itself re-delivers a message to us)."""

    def __init__(self, port: int, topic: str, client_id: str = "", persistent: bool = False) -> None:
        import threading
        import time

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self.arrivals: list[float] = []
        self.dups: list[bool] = []
        self.connects: list[float] = []  # time.monotonic() of each (re)connection
        self._cond = threading.Condition()
        if persistent:  # a durable session: QoS 1 messages wait on the broker while we are away
            self.client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
            )
            # back within 0.25 s of the broker, so that arrival times measure the daemon's reconnect, not ours
            self.client.reconnect_delay_set(0.1, 0.25)
        else:
            self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()

        def on_connect(c: Any, u: Any, f: Any, r: Any, p: Any) -> None:
            self.connects.append(time.monotonic())
            c.subscribe(topic, qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, rc: Any, p: Any) -> None:
            ready.set()

        def on_message(c: Any, u: Any, msg: Any) -> None:
            with self._cond:
                self.arrivals.append(time.monotonic())
                self.dups.append(bool(msg.dup))
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
                self._cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "subscriber did not connect"

    def __len__(self) -> int:
        return len(self.messages)

    def wait_for(self, pred: Any, timeout: float) -> bool:
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def payloads(self, suffix: str) -> list[Any]:
        out = []
        for topic, payload, _ in list(self.messages):
            if topic.endswith(suffix):
                try:
                    out.append(json.loads(payload))
                except ValueError:
                    out.append(payload.decode())
        return out

    def publish(self, topic: str, payload: str | bytes, retain: bool = False, **kw: Any) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain, **kw).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
