"""A failure is recorded, never retried forever: an utterance the engine cannot transcribe is tried
`asr.max_attempts` times, then marked failed with its reason, reported on `error`, kept on disk, and the box
goes on with the next one (gapless seqs, `ping` answered). Also across restarts: an utterance whose attempts
all ended in a crash is given up by the start that would exceed the limit.

In-process daemon (real engine wrapped to fail on one sentence, real store, real Mosquitto).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import Broker, Recorder, eval_clip

from daemon.audio.source import FileSource
from daemon.core import app as core_app
from daemon.core.app import App
from daemon.settings import load_settings
from daemon.transcript import Audio, DecodeOptions, Transcript

DEVICE = "poison"
POISON = "wolves"  # utterance 4 of en_long_concat_hifitts6097: "and with them came the wolves."


class FailsOn:
    """The real engine, except that a result containing `word` raises (as a tokenizer or a driver might)."""

    def __init__(self, engine: Any, word: str) -> None:
        self.engine, self.word = engine, word
        self.info = engine.info
        self.raised = 0

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        out: list[Transcript] = self.engine.transcribe(audios, options)
        if not options.draft and any(self.word in t.text.lower() for t in out):
            self.raised += 1
            raise RuntimeError(f"engine exploded on {self.word!r}\nsecond line of the message")
        return out

    def close(self) -> None:
        self.engine.close()


def settings_for(broker: Broker, env: dict[str, str]) -> Any:
    return load_settings(
        None,
        {
            "mqtt": {"port": broker.port, "host": "127.0.0.1", "device_id": DEVICE},
            "store": {"path": Path(env["ASRBOX_STORE__PATH"])},
            "asr": {"cache_dir": Path(env["ASRBOX_ASR__CACHE_DIR"])},
        },
    )


def test_poison_utterance_fails_after_n_attempts(
    broker: Broker, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrappers: list[FailsOn] = []
    real_load = core_app.load_engine

    def load(settings: Any) -> FailsOn:
        wrappers.append(FailsOn(real_load(settings), POISON))
        return wrappers[-1]

    monkeypatch.setattr(core_app, "load_engine", load)
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    rec = Recorder(broker.port, f"asrbox/{DEVICE}/#")
    app = App(settings_for(broker, env), FileSource(wav, speed=4.0), exit_at_end=True)
    runner = threading.Thread(target=app.run)
    runner.start()
    runner.join(300)
    assert not runner.is_alive()
    finals = rec.payloads("/transcript/final")
    errors = [e for e in rec.payloads("/error") if isinstance(e, dict) and e["code"] == "transcription_failed"]
    rec.close()
    assert len(finals) == 13 and not any(POISON in f["text"].lower() for f in finals)
    assert [f["seq"] for f in finals] == list(range(1, 14))  # the failed one takes no seq: no gap
    assert len(errors) == 1 and "gave up after 3 attempt(s)" in errors[0]["message"]
    assert "RuntimeError: engine exploded" in errors[0]["message"] and "\n" not in errors[0]["message"]
    uid = errors[0]["context"]["utterance_id"]
    store = Path(env["ASRBOX_STORE__PATH"])
    with sqlite3.connect(f"file:{store / 'asrbox.db'}?mode=ro", uri=True) as db:
        status, attempts, error, audio = db.execute(
            "SELECT status, attempts, error, audio_path FROM records WHERE id=?", (uid,)
        ).fetchone()
        pending = db.execute("SELECT COUNT(*) FROM records WHERE status='pending'").fetchone()[0]
    assert status == "failed" and attempts == 3 and "engine exploded" in error and pending == 0
    assert (store / audio).is_file()  # kept on disk
    assert wrappers[0].raised >= 3


def test_attempts_count_across_restarts(broker: Broker, env: dict[str, str]) -> None:
    """A pending row whose every attempt crashed the process (attempts already at the limit) is given up at the
    next start, reported, and does not stop the daemon from answering."""
    from daemon.store.db import Store

    store_dir = Path(env["ASRBOX_STORE__PATH"])
    store = Store(store_dir)
    rid = store.begin_live(
        session_id=None,
        audio_path=None,
        started_at="2026-01-01T00:00:00.000Z",
        ended_at="2026-01-01T00:00:02.000Z",
        duration_s=2.0,
        speech_end_ts=0.0,
    )
    for _ in range(3):
        store.claim_attempt(rid)
    store.close()
    rec = Recorder(broker.port, f"asrbox/{DEVICE}/#")
    app = App(settings_for(broker, env), FileSource(eval_clip("en_jfk")[0], speed=4.0), exit_at_end=True)
    runner = threading.Thread(target=app.run)
    runner.start()
    runner.join(300)
    assert not runner.is_alive()
    errors = [e for e in rec.payloads("/error") if isinstance(e, dict) and e["code"] == "transcription_failed"]
    finals = rec.payloads("/transcript/final")
    rec.close()
    assert len(errors) == 1 and errors[0]["context"]["utterance_id"] == rid
    assert "gave up after 3 attempt(s)" in errors[0]["message"]
    assert finals and [f["seq"] for f in finals] == list(range(1, len(finals) + 1))  # the box went on
    with sqlite3.connect(f"file:{store_dir / 'asrbox.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT status, error FROM records WHERE id=?", (rid,)).fetchone()
    assert row[0] == "failed" and json.dumps(row[1])
