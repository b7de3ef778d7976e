"""A microphone that vanishes and returns, and a capture thread that dies: the daemon in-process with a
scripted source (the only fake), real engine, real store, real Mosquitto."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Broker, Recorder, eval_clip

from daemon.audio.block import Block
from daemon.audio.decode import SAMPLE_RATE, decode_file
from daemon.audio.source import SourceError
from daemon.core.app import App
from daemon.settings import load_settings

DEVICE = "flaky"


class ScriptedSource:
    """Real speech in real time; fails (like an unplugged USB microphone) during [fail_at, fail_at + fail_for)."""

    name = "scripted"

    def __init__(self, audio: np.ndarray, fail_at: float, fail_for: float, crash: bool = False) -> None:
        self.audio = audio
        self.fail_at, self.fail_for, self.crash = fail_at, fail_for, crash
        self.t0 = 0.0  # the script's clock starts at the first open (model loading takes varying time)
        self.wall0 = 0.0
        self.pos = 0
        self.opens = 0

    def _failing(self) -> bool:
        t = time.monotonic() - self.t0
        return self.fail_at <= t < self.fail_at + self.fail_for

    def open(self) -> None:
        if not self.t0:
            self.t0, self.wall0 = time.monotonic(), time.time()
        if self._failing():
            raise SourceError("microphone vanished (device unplugged)")
        self.opens += 1

    def read(self) -> Block:
        time.sleep(0.1)
        if self._failing():
            if self.crash:
                raise RuntimeError("driver bug")
            raise SourceError("microphone read failed: device vanished")
        n = SAMPLE_RATE // 10
        block = Block(self.pos, np.take(self.audio, range(self.pos, self.pos + n), mode="wrap").astype(np.float32))
        self.pos += n
        return block

    def wall_time(self, sample: int) -> float:
        return self.wall0 + sample / SAMPLE_RATE

    def close(self) -> None:
        pass


def make_app(broker: Broker, env: dict[str, str], source: ScriptedSource) -> App:
    settings = load_settings(
        None,
        {
            "mqtt": {"port": broker.port, "host": "127.0.0.1", "device_id": DEVICE},
            "store": {"path": Path(env["ASRBOX_STORE__PATH"])},
            "asr": {"cache_dir": Path(env["ASRBOX_ASR__CACHE_DIR"])},
        },
    )
    return App(settings, source)  # type: ignore[arg-type]


@contextlib.contextmanager
def running(app: App) -> Iterator[tuple[App, threading.Thread]]:
    """The app running on a thread; stopped (and joined) when the block ends, however it ends."""
    runner = threading.Thread(target=app.run)
    runner.start()
    try:
        yield app, runner
    finally:
        app.request_stop()
        runner.join(60)


def test_microphone_vanishes_and_returns(broker: Broker, env: dict[str, str]) -> None:
    audio = decode_file(eval_clip("en_jfk")[0])
    rec = Recorder(broker.port, f"asrbox/{DEVICE}/#")
    src = ScriptedSource(audio, fail_at=6.0, fail_for=3.0)
    with running(make_app(broker, env, src)) as (app, runner):
        assert rec.wait_for(
            lambda m: any(
                x.get("reason") and "vanished" in str(x["reason"])
                for x in rec.payloads("/state")
                if isinstance(x, dict)
            ),
            60,
        )
        assert app.healthy()  # waiting for a device is a known state, not a stall
        back = src.t0 + src.fail_at + src.fail_for
        assert rec.wait_for(
            lambda m: [x for x in rec.payloads("/state") if isinstance(x, dict)][-1]["state"] == "listening", 30
        )
        assert time.monotonic() - back < 5.0  # recovered within 5 s of the device returning
        assert src.opens >= 2
        errors = [x for x in rec.payloads("/error") if isinstance(x, dict)]
        assert any(x["code"] == "source_failed" for x in errors)
    assert not runner.is_alive()
    rec.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dead_capture_thread_is_noticed(broker: Broker, env: dict[str, str]) -> None:
    audio = decode_file(eval_clip("en_jfk")[0])
    rec = Recorder(broker.port, f"asrbox/{DEVICE}/state")
    src = ScriptedSource(audio, fail_at=4.0, fail_for=1000.0, crash=True)
    with running(make_app(broker, env, src)) as (app, _):
        assert rec.wait_for(
            lambda m: any(
                "stage stalled: capture" in str(x.get("reason")) for x in rec.payloads("state") if isinstance(x, dict)
            ),
            60,
        )
        assert not app.healthy()  # so the watchdog is withheld and systemd restarts the service
    rec.close()
