"""Never lose a word: broker outage, crash, interrupted batch. Real Mosquitto, real daemon, real SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from conftest import ROOT, Broker, Recorder, eval_clip
from test_daemon import (
    DEVICE,
    ROOT_TOPIC,
    assert_exactly_once,
    daemon_env,
    final_seqs,
    ping,
    results,
    start_daemon,
)

from daemon.core.commands import COMMAND_QUEUE, CommandDesk
from daemon.mqtt.client import Command

OUTAGE_S = 60.0


def finals_by_seq(rec: Recorder) -> dict[int, dict[str, Any]]:
    """Every final received, by seq; a seq received twice fails the test (exactly once)."""
    out: dict[int, dict[str, Any]] = {}
    for f in rec.payloads("/transcript/final"):
        if isinstance(f, dict):
            assert int(f["seq"]) not in out, f"seq {f['seq']} published twice: {final_seqs(rec)}"
            out[int(f["seq"])] = f
    return out


def db_state(store: Path) -> tuple[int, int, int, str]:
    db = sqlite3.connect(f"file:{store / 'asrbox.db'}?mode=ro", uri=True)  # never create it for the daemon
    try:
        done = db.execute("SELECT COUNT(*) FROM records WHERE kind='live' AND status='done'").fetchone()[0]
        pending = db.execute("SELECT COUNT(*) FROM records WHERE kind='live' AND status='pending'").fetchone()[0]
        unsent = db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    return done, pending, unsent, integrity


def db_rows(store: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{store / 'asrbox.db'}?mode=ro", uri=True)) as db:
        return [tuple(r) for r in db.execute(sql)]


def poll_db(store: Path, pred: Callable[[tuple[int, int, int, str]], bool], timeout: float) -> bool:
    """Poll the daemon's database (read-only) until `pred(db_state)` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred(db_state(store)):
                return True
        except sqlite3.OperationalError:  # the daemon has not created its schema yet
            pass
        time.sleep(0.1)
    return False


def log_says(log: Path, pattern: str, timeout: float) -> bool:
    """Poll a daemon's log until a line matches `pattern` (a regular expression)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text()):
            return True
        time.sleep(0.1)
    return False


RUNNING = r"asrbox \S+ running"  # the daemon's loop is up: model loaded, MQTT client started
SOURCE_ENDED = r"audio source \S+ ended"  # the capture thread has played the whole file


def test_broker_outage_then_daemon_restart_loses_nothing(env: dict[str, str], tmp_path: Path) -> None:
    """Mosquitto stops for a minute in the middle of a session, the daemon is even restarted while it is down:
    every final is delivered once it is back, in seq order, without gaps, within 2 s of the broker's return.

    QoS 1 promises at least once: the only repeat allowed is a final the first process handed to the broker
    without getting its PUBACK (its row still unsent in the database), sent again by the second process. Within
    one process's lifetime nothing arrives twice."""
    broker = Broker(tmp_path, persistent=True)
    broker.start()
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/transcript/final", client_id="durable-display", persistent=True)
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    e = daemon_env(env, broker)
    store = Path(e["ASRBOX_STORE__PATH"])
    proc = start_daemon(e, "--source", str(wav), "--speed", "2", log=tmp_path / "d1.log")
    try:
        assert rec.wait_for(lambda m: len(m) >= 2, 120), (tmp_path / "d1.log").read_text()[-2000:]
        broker.stop()
        t_down = time.monotonic()
        n1 = len(rec.messages)  # what the first process delivered before the outage (nothing arrives now)
        time.sleep(OUTAGE_S / 2)  # the outage itself: the daemon keeps transcribing into its outbox
        proc.send_signal(signal.SIGTERM)  # and is restarted while the broker is still down
        assert proc.wait(60) == 0
        done1, pending1, unsent, integrity = db_state(store)
        # finals stored while the broker was away wait in the outbox; utterances the worker had not reached
        # within its shutdown deadline (a slow or busy CPU) stay pending and are transcribed by the next process
        assert integrity == "ok" and unsent > 0
        unsent1 = {s for (s,) in db_rows(store, "SELECT seq FROM outbox WHERE sent_at IS NULL")}
        assert max(unsent1) == done1  # the outbox's seqs are the finals' seqs
        proc = start_daemon(e, "--source", str(eval_clip("en_jfk")[0]), log=tmp_path / "d2.log")
        # the broker returns to a running daemon (on a loaded machine its start can outlast the outage)
        assert log_says(tmp_path / "d2.log", RUNNING, 180), (tmp_path / "d2.log").read_text()[-2000:]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_down)))  # the rest of the outage
        stored = db_rows(store, "SELECT MAX(seq) FROM outbox")[0][0]  # the last final stored while it was down
        broker.start()
        t_back = time.monotonic()
        assert rec.wait_for(lambda m: stored in final_seqs(rec)[n1:], 30), (tmp_path / "d2.log").read_text()[-2000:]
        arrived = rec.arrivals[n1 + final_seqs(rec)[n1:].index(stored)]
        print(
            f"outbox drained {arrived - t_back:.2f} s after the broker came back ({stored} finals stored); "
            f"subscriber back after {rec.connects[-1] - t_back:.2f} s; arrivals after the broker's return (s): "
            f"{[round(t - t_back, 2) for t in rec.arrivals[n1:]]}"
        )
        # the second process has played its clip and transcribed and delivered everything (the recovered too)
        assert log_says(tmp_path / "d2.log", SOURCE_ENDED, 120)
        assert poll_db(store, lambda s: s[1] == 0 and s[2] == 0 and s[0] > done1 + pending1, 300), db_state(store)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, (tmp_path / "d2.log").read_text()[-2000:]
    done, pending, unsent, integrity = db_state(store)
    assert integrity == "ok" and pending == 0 and unsent == 0
    assert rec.wait_for(lambda m: set(final_seqs(rec)) >= set(range(1, done + 1)), 10), "a final never arrived"
    assert arrived - t_back <= 2.0, f"the outbox drained {arrived - t_back:.2f} s after the broker came back"
    seqs, dups = final_seqs(rec), rec.dups
    assert max(seqs) == done
    first = seqs[:n1]  # sent by the first process
    assert_exactly_once(first, 1, len(first))
    # Mosquitto re-delivers (DUP) what it had sent us without our PUBACK when it stopped: the broker's repeat
    redelivered = [s for s, d in zip(seqs[n1:], dups[n1:], strict=True) if d]
    assert set(redelivered) <= set(first)
    second = [s for s, d in zip(seqs[n1:], dups[n1:], strict=True) if not d]  # sent by the second process
    assert second == sorted(set(second)), f"the second process sent a seq twice or out of order: {second}"
    # the second process sent exactly the rows the first left unacknowledged, then its own
    assert set(second) == unsent1 | set(range(done1 + 1, done + 1))
    assert set(first) | set(second) == set(range(1, done + 1))
    rec.close()
    broker.stop()


def start_blocking(env: dict[str, str], gate: Path, log: Path, wav: Path, *flags: str) -> subprocess.Popen[bytes]:
    """The real daemon through tests/blocking_daemon.py: its engine hangs (or holds) once `gate` exists."""
    cmd = [sys.executable, str(ROOT / "tests" / "blocking_daemon.py"), str(gate), *flags]
    cmd += ["run", "--source", str(wav), "--speed", "2"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def test_kill_9_mid_speech_then_restart_transcribes_everything_once(
    broker: Broker, env: dict[str, str], tmp_path: Path
) -> None:
    """A crash with utterances stored but not transcribed: the ASR hangs (a blocking engine, whatever the CPU)
    until at least two are pending, then kill -9. The restart transcribes each pending one exactly once."""
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/transcript/final")
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    e = daemon_env(env, broker)
    store = Path(e["ASRBOX_STORE__PATH"])
    gate = tmp_path / "hang-asr-now"
    log1 = tmp_path / "d1.log"
    proc = start_blocking(e, gate, log1, wav)
    try:
        # a final delivered before the engine hangs, so seqs must continue across the crash
        assert rec.wait_for(lambda m: final_seqs(rec), 120), log1.read_text()[-2000:]
        gate.touch()
        # every utterance that ends from now on stays pending; the one being transcribed (if any) is delivered
        # and acknowledged, so nothing is in flight at the crash and exactly once is what the restart owes
        assert poll_db(store, lambda s: s[1] >= 2 and s[2] == 0, 120), (db_state(store), log1.read_text()[-2000:])
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    done0, pending0, unsent0, integrity = db_state(store)
    assert integrity == "ok" and pending0 >= 2 and unsent0 == 0, (done0, pending0, unsent0)
    pending_ids = {r for (r,) in db_rows(store, "SELECT id FROM records WHERE kind='live' AND status='pending'")}
    assert rec.wait_for(lambda m: len(final_seqs(rec)) >= done0, 10)
    assert_exactly_once(final_seqs(rec), 1, done0)
    # restart on a short clip: the pending utterances of the first run are transcribed from their WAV files
    proc = start_daemon(e, "--source", str(eval_clip("en_jfk")[0]), "--exit-at-end", log=tmp_path / "d2.log")
    assert proc.wait(180) == 0, (tmp_path / "d2.log").read_text()[-2000:]
    assert f"recovering {pending0} utterance(s)" in (tmp_path / "d2.log").read_text()
    done, pending, unsent, integrity = db_state(store)
    assert integrity == "ok" and pending == 0 and unsent == 0 and done > done0 + pending0  # + the new clip
    assert not list(store.rglob("*.part"))
    assert rec.wait_for(lambda m: len(final_seqs(rec)) >= done, 10)
    got = finals_by_seq(rec)  # fails on a seq received twice
    assert_exactly_once(final_seqs(rec), 1, done)
    ids = [f["id"] for f in got.values()]
    assert len(set(ids)) == done and pending_ids <= set(ids)  # each utterance published once, none lost
    # an attempt is charged when the final is handed to the worker, one at a time: the one in the hung engine's
    # hands was charged in both processes, the ones waiting behind it only after the restart
    attempts = dict(db_rows(store, "SELECT id, attempts FROM records WHERE kind='live'"))
    assert sorted(attempts[i] for i in pending_ids) == [1] * (len(pending_ids) - 1) + [2]
    assert {n for i, n in attempts.items() if i not in pending_ids} == {1}
    rec.close()


def test_sigterm_late_result_is_not_stored_after_the_outbox_drain(
    broker: Broker, env: dict[str, str], tmp_path: Path
) -> None:
    """SIGTERM while a final's transcription outlasts the worker's shutdown deadline (app.DRAIN_WORKER_S for the
    backlog, then app.WORKER_JOIN_S for the job in hand): its result comes back just after the outbox drain.
    The shutdown order promises "the rest stays pending": that row must stay pending (transcribed on the next
    start), not be stored and queued after the drain, outside it, while MQTT disconnects (then done but unsent,
    or handed to paho mid-disconnect). Deterministic: the harness holds the result until the drain returned."""
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/transcript/final")
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    e = daemon_env(env, broker)
    store = Path(e["ASRBOX_STORE__PATH"])
    gate = tmp_path / "hold-asr-now"
    log1 = tmp_path / "d1.log"
    proc = start_blocking(e, gate, log1, wav, "--hold-until-drained")
    try:
        assert rec.wait_for(lambda m: final_seqs(rec), 120), log1.read_text()[-2000:]
        gate.touch()
        # two waiting: the worker holds one started after the gate, whatever it was doing before
        assert poll_db(store, lambda s: s[1] >= 2 and s[2] == 0, 120), (db_state(store), log1.read_text()[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        sigterm = datetime.now(UTC)
        rc = proc.wait(180)
    print(f"SIGTERM at {sigterm:%H:%M:%S.%f}, exit after {(datetime.now(UTC) - sigterm).total_seconds():.1f} s")
    assert rc == 0, log1.read_text()[-2000:]
    found = re.search(r"outbox drain returned at (\S+)", log1.read_text())
    assert found, log1.read_text()[-2000:]
    late = db_rows(store, f"SELECT seq, created_at, sent_at FROM outbox WHERE created_at > '{found[1]}'")
    assert not late, f"final(s) stored after the outbox drain returned at {found[1]}: {late}"
    done, pending, unsent, integrity = db_state(store)
    assert integrity == "ok" and unsent == 0 and pending >= 1
    assert rec.wait_for(lambda m: len(final_seqs(rec)) >= done, 10)
    assert_exactly_once(final_seqs(rec), 1, done)
    rec.close()


def test_interrupted_batch_resumes_without_redoing(env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    ids = [
        "en_jfk",
        "en_librispeech_1272-128104-0001",
        "en_librispeech_1995-1837-0001",
        "zh_aishell1_BAC009S0764W0121",
        "en_hifitts6097_nada_lily_12_haggard_0523",
        "en_sphinx_cards_001",
    ]
    for cid in ids:
        shutil.copy(eval_clip(cid)[0], src / f"{cid}.wav")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "daemon", "transcribe", str(src), "-o", str(out), "--batch-size", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.txt"))) < 2:
        time.sleep(0.05)
    proc.kill()  # a power cut, as far as the process can tell
    proc.wait(10)
    finished = {p.stem for p in out.glob("*.txt")}
    assert 2 <= len(finished) < len(ids)
    assert not list(out.glob("*.part"))
    r = subprocess.run([*cmd, "-v"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("already transcribed") >= len(finished)
    assert {p.stem for p in out.glob("*.txt")} == set(ids)
    db = sqlite3.connect(Path(env["ASRBOX_STORE__PATH"]) / "asrbox.db")
    per_file = db.execute("SELECT source, COUNT(*) FROM records WHERE status='done' GROUP BY source").fetchall()
    assert len(per_file) == len(ids) and all(n == 1 for _, n in per_file)
    assert DEVICE


def test_low_disk_stops_archiving_but_not_transcribing(broker: Broker, env: dict[str, str], tmp_path: Path) -> None:
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/#")
    e = daemon_env(env, broker, ASRBOX_STORE__MIN_FREE_MB=str(10**9))
    proc = start_daemon(e, "--source", str(eval_clip("en_jfk")[0]), "--exit-at-end", log=tmp_path / "d.log")
    assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()[-2000:]
    store = Path(e["ASRBOX_STORE__PATH"])
    done, pending, unsent, integrity = db_state(store)
    assert integrity == "ok" and pending == 0 and unsent == 0 and done >= 1
    assert_exactly_once(final_seqs(rec), 1, done)  # ended by the end of the source: each final once
    finals = rec.payloads("/transcript/final")
    assert all(f["audio"]["path"] is None for f in finals)
    errors = rec.payloads("/error")
    assert any(x["code"] == "disk_low" for x in errors)
    states = [x for x in rec.payloads("/state") if isinstance(x, dict)]
    assert any("disk low" in (x.get("reason") or "") for x in states)
    assert not (store / "audio").exists() or not list((store / "audio").rglob("*.wav"))
    rec.close()


def test_asr_slower_than_real_time_backlog_visible_nothing_lost(
    broker: Broker, env: dict[str, str], tmp_path: Path
) -> None:
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/#")
    slow = daemon_env(env, broker, ASRBOX_ASR__LIVE_BEAM_SIZE="10", ASRBOX_ASR__LIVE_SHORT_WINDOW="false")
    proc = start_daemon(slow, "--source", str(wav), "--speed", "8", "--exit-at-end", log=tmp_path / "d.log")
    assert proc.wait(300) == 0, (tmp_path / "d.log").read_text()[-2000:]
    assert_exactly_once(final_seqs(rec), 1, 14)
    backlogs = [x["backlog"] for x in rec.payloads("/state") if isinstance(x, dict)]
    assert max(backlogs) >= 2, backlogs  # the backlog is visible while it lasts
    diags = [x for x in rec.payloads("/diagnostics") if isinstance(x, dict)]
    assert diags and {"backlog", "dropped_frames", "dropped_partials", "disk_free_mb"} <= set(diags[-1])
    assert diags[-1]["dropped_frames"] == 0  # capture never overflowed: only partials may be dropped
    rec.close()


def test_command_desk_refuses_past_its_bound() -> None:
    """The desk with nobody consuming: exactly the commands past the bound are refused at once (busy, counted);
    an action past the bound is dropped (counted); the queued ones are then all answered, in order."""
    replies: list[dict[str, Any]] = []
    flood = COMMAND_QUEUE + 5

    async def main() -> int:
        answered = asyncio.Event()

        def reply(cmd: Command, body: dict[str, Any]) -> None:
            replies.append(body)
            if len(replies) == flood:
                answered.set()

        app = SimpleNamespace(client=SimpleNamespace(reply=reply), state="listening", started_mono=time.monotonic())
        desk = CommandDesk(cast(Any, app))
        for i in range(flood):
            desk.intake(Command("ping", json.dumps({"request_id": i}).encode(), retained=False))
        assert desk.dropped == 5 and desk.queue.qsize() == COMMAND_QUEUE
        assert replies == [{"ok": False, "error": "busy: too many commands, try again", "request_id": None}] * 5
        ran: list[int] = []
        desk.intake(lambda: ran.append(1))  # an integration's action past the bound: dropped, no reply
        desk.intake(Command("stop", b"{}", retained=True))  # retained: ignored, neither queued nor counted
        assert desk.dropped == 6 and len(replies) == 5 and desk.queue.qsize() == COMMAND_QUEUE
        task = desk.start()
        await asyncio.wait_for(answered.wait(), 10)
        assert [r["request_id"] for r in replies[5:]] == list(range(COMMAND_QUEUE))  # the first ones, in order
        assert all(r["ok"] and r["state"] == "listening" for r in replies[5:])
        handled = asyncio.Event()
        desk.intake(handled.set)  # room again: an action is queued and run
        await asyncio.wait_for(handled.wait(), 5)
        assert ran == []  # the dropped action never ran
        task.cancel()
        return desk.dropped

    assert asyncio.run(main()) == 6


def test_command_flood_is_bounded(broker: Broker, env: dict[str, str], tmp_path: Path) -> None:
    """500 pings at once: each gets exactly one reply, `ok` (handled, in order) or `busy` (refused at once),
    and the daemon stays alive and answering."""
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/#")
    proc = start_daemon(daemon_env(env, broker), "--source", str(eval_clip("en_jfk")[0]), log=tmp_path / "d.log")
    try:
        assert rec.wait_for(lambda m: rec.payloads("/status")[-1:] == ["online"], 90)
        ping(rec, "ready", tries=10)  # subscribed and answering
        flood = 500
        for i in range(flood):
            rec.client.publish(f"{ROOT_TOPIC}/cmd/ping", json.dumps({"request_id": i}), qos=0)
        # the barrier: every ping of the flood answered (the busy replies come at once, the others in turn)
        assert rec.wait_for(lambda m: len(results(rec, "ping")) >= flood + 1, 120), len(results(rec, "ping"))
        rec.publish(f"{ROOT_TOPIC}/cmd/bogus", b"{}")
        assert rec.wait_for(lambda m: results(rec, "bogus"), 30)
        assert "unknown command" in results(rec, "bogus")[0]["error"]
        after = ping(rec, "after")  # still answering, in order, after the flood
        assert after["ok"] is True
        assert proc.poll() is None
        replies = [r for r in results(rec, "ping") if r["request_id"] not in ("ready", "after")]
        assert len(replies) == flood  # exactly one reply each
        ok = [r["request_id"] for r in replies if r["ok"]]
        busy = [r for r in replies if not r["ok"]]
        assert ok == sorted(set(ok)) and set(ok) <= set(range(flood))  # handled once each, in arrival order
        assert len(ok) >= COMMAND_QUEUE  # the queue's worth is always accepted
        assert all("busy" in r["error"] and r["request_id"] is None for r in busy)
        print(f"flood: {len(ok)} pings handled, {len(busy)} refused busy")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    rec.close()


def test_sigterm_mid_utterance_keeps_it(broker: Broker, env: dict[str, str], tmp_path: Path) -> None:
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/#")
    e = daemon_env(env, broker)
    proc = start_daemon(e, "--source", str(eval_clip("en_long_concat_hifitts6097")[0]), log=tmp_path / "d.log")
    try:
        assert rec.wait_for(lambda m: len(rec.payloads("/transcript/final")) >= 1, 90)
        on = rec.payloads("/speech").count("ON")
        assert rec.wait_for(lambda m: rec.payloads("/speech").count("ON") > on, 30)  # someone starts speaking
        time.sleep(0.6)  # the scenario, not a wait: SIGTERM 0.6 s into their utterance
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    started = rec.payloads("/speech").count("ON")
    done, pending, unsent, integrity = db_state(Path(e["ASRBOX_STORE__PATH"]))
    assert integrity == "ok" and pending == 0 and unsent == 0
    assert done == started  # the utterance cut by the stop was stored, transcribed and published
    assert_exactly_once(final_seqs(rec), 1, done)  # ended by SIGTERM: each final once, none lost
    rec.close()
