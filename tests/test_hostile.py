"""Hostile MQTT commands against the running daemon: each gets one `ok: false` line, nothing is changed, and
the box goes on answering `ping` and transcribing (before, an exception in the command path left these
without any reply, and hotwords full of lone surrogates made every later English utterance fail)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from conftest import Broker, Recorder, eval_clip
from test_daemon import ROOT_TOPIC, daemon_env, results, start_daemon

HOSTILE: list[tuple[str, bytes]] = [
    ("ping", b"[" * 20_000 + b"]" * 20_000),  # nested 20,000 deep (40 KB, under the size limit)
    ("start", b'{"session_name": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}"),
    ("ping", b'{"request_id": ' + b"7" * 5_000 + b"}"),  # a 5,000-digit number
    ("start", b'{"session_name": 1e999999}'),
    ("hotwords", b'{"set": ["\\ud800abc", "ok"]}'),  # a lone surrogate
    ("hotwords", b'{"add": ["a\\u0000b"]}'),  # NUL
    ("hotwords", b'{"add": ["\\u202eevil"]}'),  # a bidi override
    ("hotwords", b'{"add": ["\\ue000"]}'),  # private use
    ("start", b'{"session_name": "x\\udfff"}'),
    ("pronounce", b'{"target": "\\u2066hi", "learner": "\\u0007"}'),
    ("ping", b'{"request_id": "\\ud83d"}'),
    ("ping", b"\xff\xfe{}"),  # not UTF-8
    ("stop", b'{"request_id": ' + b"[" * 100 + b"]" * 100 + b"}"),
]


def test_hostile_commands_get_a_reply_and_leave_the_box_working(
    broker: Broker, env: dict[str, str], tmp_path: Path
) -> None:
    wav, _ = eval_clip("en_jfk")
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/#")
    log = tmp_path / "d.log"
    proc = start_daemon(daemon_env(env, broker), "--source", str(wav), "--loops", "50", log=log)
    cmd = f"{ROOT_TOPIC}/cmd"
    try:
        assert rec.wait_for(lambda m: rec.payloads("/status")[-1:] == ["online"], 90), log.read_text()[-2000:]
        for name, payload in HOSTILE:
            before = len(results(rec, name))
            rec.publish(f"{cmd}/{name}", payload)
            assert rec.wait_for(lambda m, n=name, b=before: len(results(rec, n)) > b, 10), (name, payload[:60])
            reply = results(rec, name)[-1]
            assert reply["ok"] is False and reply["error"], (name, reply)
            assert "\n" not in reply["error"] and len(reply["error"]) <= 300, reply
            # still answering after each
            pings = len(results(rec, "ping"))
            rec.publish(f"{cmd}/ping", json.dumps({"request_id": "alive"}))
            assert rec.wait_for(lambda m, p=pings: len(results(rec, "ping")) > p, 10), name
            assert results(rec, "ping")[-1]["ok"] is True
        # nothing was changed: no hotword stored, no session renamed, and English is still transcribed
        rec.publish(f"{cmd}/hotwords", json.dumps({"add": ["Americans"]}))
        assert rec.wait_for(lambda m: results(rec, "hotwords")[-1:] and results(rec, "hotwords")[-1]["ok"], 10)
        assert results(rec, "hotwords")[-1]["hotwords"] == ["Americans"]
        finals = len(rec.payloads("/transcript/final"))

        def heard(m: object) -> bool:
            return any("country" in f["text"].lower() for f in rec.payloads("/transcript/final")[finals:])

        assert rec.wait_for(heard, 120), log.read_text()[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        rec.close()
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, text[-3000:]
    errors = [e for e in rec.payloads("/error") if isinstance(e, dict) and e.get("code") == "transcription_failed"]
    assert not errors
