"""The outbox: each final handed to paho exactly once per process, marked sent only on its PUBACK.

Unit tests run `daemon.core.outbox.Outbox` against a real SQLite store and a publisher that records what it
was handed; the last test runs it against the real MQTT client and a real Mosquitto frozen with SIGSTOP for
longer than the old 5 s republish timeout while a final is in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import Broker, Recorder

from daemon.core.outbox import WINDOW, Outbox
from daemon.mqtt.client import MqttAcked, MqttClient, MqttConnected, MqttDisconnected
from daemon.mqtt.topics import Topics
from daemon.settings import MqttSettings
from daemon.store.db import Store

TOPIC = "asrbox/unit/transcript/final"


class FakePublisher:
    """Records every `publish_tracked` call; refuses (None) while `refuse` > 0, as paho does when full."""

    def __init__(self) -> None:
        self.handed: list[tuple[int, int]] = []  # (seq, mid) of each message paho took
        self.refused: list[int] = []  # seqs refused
        self.refuse = 0
        self._mid = 100

    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> bool:
        raise AssertionError("finals go through publish_tracked only")

    def publish_tracked(self, topic: str, payload: str | bytes) -> int | None:
        assert topic == TOPIC
        seq = int(json.loads(payload)["seq"])
        if self.refuse > 0:
            self.refuse -= 1
            self.refused.append(seq)
            return None
        self._mid += 1
        self.handed.append((seq, self._mid))
        return self._mid

    def seqs(self) -> list[int]:
        return [s for s, _ in self.handed]

    def mid(self, seq: int) -> int:
        (mid,) = [m for s, m in self.handed if s == seq]
        return mid


def add_finals(store: Store, n: int) -> list[int]:
    """`n` done live records, each with its final queued in the outbox, as the daemon stores them."""
    seqs = []
    for _ in range(n):
        rid = store.begin_live(
            session_id=None,
            audio_path=None,
            started_at="2026-01-01T00:00:00.000Z",
            ended_at="2026-01-01T00:00:01.000Z",
            duration_s=1.0,
            speech_end_ts=0.0,
        )
        seq = store.finish(
            rid,
            language="en",
            raw_text="hello",
            text="Hello.",
            segments=[],
            engine={},
            processing_s=0.1,
            payload=lambda seq, rid=rid: {"id": rid, "seq": seq, "text": "Hello.", "latency_ms": 5},
        )
        assert seq is not None
        seqs.append(seq)
    return seqs


def sent(store: Store) -> set[int]:
    """Seqs whose row is marked sent, read from the database file on a connection of its own."""
    with sqlite3.connect(f"file:{store.root / 'asrbox.db'}?mode=ro", uri=True) as db:
        return {int(r[0]) for r in db.execute("SELECT seq FROM outbox WHERE sent_at IS NOT NULL")}


@pytest.fixture()
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "store")
    yield s
    s.close()


def connected_outbox(store: Store, pub: FakePublisher) -> Outbox:
    box = Outbox(store, pub, TOPIC)
    box.connected = True
    return box


def test_late_puback_never_hands_a_seq_over_twice(store: Store) -> None:
    pub = FakePublisher()
    box = connected_outbox(store, pub)
    seqs = add_finals(store, 3)
    box.pump()
    assert pub.seqs() == seqs and box.in_flight == 3
    for _ in range(50):  # the ticker pumps every 0.5 s while the PUBACKs are late
        box.pump()
    box.connected = False  # the broker went away and came back: paho re-sends what it holds, we must not
    box.pump()
    box.connected = True
    for _ in range(10):
        box.pump()
    assert pub.seqs() == seqs, "a seq in flight was handed to paho again"
    assert sent(store) == set() and store.outbox_backlog() == 3  # nothing is sent before its PUBACK
    box.acked(pub.mid(seqs[1]))  # acknowledgements may come in any order
    assert sent(store) == {seqs[1]} and box.in_flight == 2
    box.acked(pub.mid(seqs[1]))  # the same PUBACK twice: already accounted for
    box.acked(99999)  # a mid that is not a final's (state, command replies): ignored
    assert sent(store) == {seqs[1]} and box.sent == 1 and box.in_flight == 2
    box.acked(pub.mid(seqs[0]))
    box.acked(pub.mid(seqs[2]))
    assert sent(store) == set(seqs) and box.sent == 3 and box.in_flight == 0
    more = add_finals(store, 2)
    box.pump()
    assert pub.seqs() == seqs + more  # only the new rows, each once


def test_disconnected_outbox_hands_nothing_over(store: Store) -> None:
    pub = FakePublisher()
    box = Outbox(store, pub, TOPIC)
    add_finals(store, 2)
    box.pump()
    assert pub.handed == [] and box.in_flight == 0
    box.connected = True
    box.pump()
    assert pub.seqs() == [1, 2]


def test_window_bounds_what_is_in_flight(store: Store) -> None:
    pub = FakePublisher()
    box = connected_outbox(store, pub)
    seqs = add_finals(store, WINDOW + 4)
    box.pump()
    assert pub.seqs() == seqs[:WINDOW] and box.in_flight == WINDOW
    box.acked(pub.mid(seqs[0]))  # one acknowledged: one more goes out (acked pumps)
    assert pub.seqs() == seqs[: WINDOW + 1]
    for seq in seqs[1 : WINDOW + 1]:
        box.acked(pub.mid(seq))
    assert pub.seqs() == seqs and len(set(pub.seqs())) == len(seqs)
    for seq in seqs[WINDOW + 1 :]:
        box.acked(pub.mid(seq))
    assert sent(store) == set(seqs) and box.backlog() == 0


def test_refused_by_paho_is_tried_again_later(store: Store) -> None:
    pub = FakePublisher()
    box = connected_outbox(store, pub)
    seqs = add_finals(store, 3)
    pub.refuse = 1  # paho's queue is full for the first attempt
    box.pump()
    assert pub.refused == [seqs[0]] and pub.handed == [] and box.in_flight == 0
    assert sent(store) == set()
    box.pump()  # the next tick
    assert pub.seqs() == seqs  # the refused one first, in order, and each once
    for seq in seqs:
        box.acked(pub.mid(seq))
    assert sent(store) == set(seqs)


def test_refused_in_the_middle_keeps_order(store: Store) -> None:
    pub = FakePublisher()
    box = connected_outbox(store, pub)
    seqs = add_finals(store, 2)
    box.pump()
    more = add_finals(store, 2)
    pub.refuse = 1
    box.pump()
    assert pub.refused == [more[0]] and pub.seqs() == seqs
    box.pump()
    assert pub.seqs() == seqs + more


def test_drain_waits_for_acks_and_never_resends(store: Store) -> None:
    async def main() -> tuple[bool, float]:
        pub = FakePublisher()
        box = connected_outbox(store, pub)
        seqs = add_finals(store, 3)
        box.pump()
        loop = asyncio.get_running_loop()
        for i, seq in enumerate(seqs):  # PUBACKs arrive while drain waits
            loop.call_later(0.05 * (i + 1), box.acked, pub.mid(seq))
        t0 = loop.time()
        ok = await box.drain(5.0)
        assert pub.seqs() == seqs and sent(store) == set(seqs)
        return ok, loop.time() - t0

    ok, waited = asyncio.run(main())
    assert ok is True and waited < 2.0  # returned when the last ack came, not at the timeout


def test_drain_times_out_without_acks(store: Store) -> None:
    async def main() -> bool:
        pub = FakePublisher()
        box = connected_outbox(store, pub)
        seqs = add_finals(store, 2)
        box.pump()
        ok = await box.drain(0.3)
        assert pub.seqs() == seqs  # waiting did not hand anything over again
        assert sent(store) == set() and box.backlog() == 2
        return ok

    assert asyncio.run(main()) is False


def test_drain_disconnected_times_out_and_empty_returns_at_once(store: Store) -> None:
    async def main() -> tuple[bool, bool]:
        pub = FakePublisher()
        empty = await connected_outbox(store, pub).drain(5.0)
        add_finals(store, 1)
        offline = await Outbox(store, pub, TOPIC).drain(0.2)  # a stored final that cannot be sent
        assert pub.handed == []
        return empty, offline

    assert asyncio.run(main()) == (True, False)


# ---------------------------------------------------------------------- real paho, real Mosquitto


class Counting:
    """The real client, counting what the outbox hands it."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.handed: list[int] = []

    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> bool:
        return self.client.publish(topic, payload, qos, retain)

    def publish_tracked(self, topic: str, payload: str | bytes) -> int | None:
        mid = self.client.publish_tracked(topic, payload)
        if mid is not None:
            self.handed.append(int(json.loads(payload)["seq"]))
        return mid


def seqs_received(rec: Recorder) -> list[int]:
    return [int(p["seq"]) for p in rec.payloads("/transcript/final") if isinstance(p, dict)]


def test_broker_frozen_past_old_timeout_final_arrives_once(broker: Broker, tmp_path: Path) -> None:
    """Mosquitto is frozen (SIGSTOP) for 7 s while a final is in flight, then thawed: paho still holds the
    message and delivers it; the outbox waits for the PUBACK and never publishes it again (the old client
    republished after 5 s, so the subscriber got it twice)."""
    topics = Topics("asrbox", "frozen")
    rec = Recorder(broker.port, f"{topics.root}/transcript/final")
    store = Store(tmp_path / "store")
    assert broker.proc is not None
    pid = broker.proc.pid

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        online = asyncio.Event()
        acks: list[int] = []
        box: Outbox | None = None

        def dispatch(ev: object) -> None:
            assert box is not None
            if isinstance(ev, MqttConnected):
                box.connected = True
                box.pump()
                online.set()
            elif isinstance(ev, MqttDisconnected):
                box.connected = False
            elif isinstance(ev, MqttAcked):
                acks.append(ev.mid)
                box.acked(ev.mid)

        settings = MqttSettings(host="127.0.0.1", port=broker.port, device_id="frozen", keepalive=60)
        client = MqttClient(settings, topics, lambda ev: loop.call_soon_threadsafe(dispatch, ev))
        counting = Counting(client)
        box = Outbox(store, counting, topics.final)
        client.start()
        try:
            await asyncio.wait_for(online.wait(), 10)
            os.kill(pid, signal.SIGSTOP)
            try:
                (seq,) = add_finals(store, 1)
                box.pump()
                assert counting.handed == [seq] and box.in_flight == 1
                for _ in range(14):  # 7 s frozen (the scenario), with the ticker's pumps
                    await asyncio.sleep(0.5)
                    box.pump()
                assert sent(store) == set()  # no PUBACK yet: not sent
            finally:
                os.kill(pid, signal.SIGCONT)
            assert await box.drain(10.0), "the final in flight was not acknowledged after the thaw"
            assert sent(store) == {seq}
            # a barrier: a second final; the broker keeps order, so any repeat of the first would come before it
            (second,) = add_finals(store, 1)
            box.pump()
            assert await box.drain(10.0)
            assert rec.wait_for(lambda m: second in seqs_received(rec), 10)
        finally:
            await asyncio.to_thread(client.stop)
        return counting.handed

    try:
        handed = asyncio.run(main())
        assert handed == [1, 2]  # each handed to paho once
        assert seqs_received(rec) == [1, 2], "the final in flight during the freeze arrived twice"
        assert sent(store) == {1, 2} and store.outbox_backlog() == 0
    finally:
        rec.close()
        store.close()


def test_refused_puback_leaves_the_row_unsent_and_retries_later(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MQTT 5 PUBACK with a failure code (an ACL, a quota) is not a delivery: the row stays unsent, it is
    reported, nothing else is handed over twice, and after the back-off the refused seq goes out again."""
    import daemon.core.outbox as outbox_module

    clock = [1000.0]
    monkeypatch.setattr(outbox_module.time, "monotonic", lambda: clock[0])
    refused: list[tuple[int, str]] = []
    pub = FakePublisher()
    box = Outbox(store, pub, TOPIC, lambda seq, why: refused.append((seq, why)))
    box.connected = True
    seqs = add_finals(store, 3)
    box.pump()
    box.acked(pub.mid(seqs[0]))
    box.acked(pub.mid(seqs[1]), "Not authorized")
    assert sent(store) == {seqs[0]} and refused == [(seqs[1], "Not authorized")]
    box.pump()
    assert pub.seqs() == seqs  # backing off: nothing handed over, seqs[2] still in flight
    clock[0] += outbox_module.RETRY_REFUSED_S + 1
    box.pump()
    assert pub.seqs() == [*seqs, seqs[1]]  # the refused one again, the one in flight not
    box.acked(pub.handed[-1][1])
    box.acked(pub.mid(seqs[2]))
    assert sent(store) == set(seqs)


def test_closed_outbox_records_acks_but_hands_nothing_over(store: Store) -> None:
    pub = FakePublisher()
    box = connected_outbox(store, pub)
    first = add_finals(store, 1)
    box.pump()
    box.closed = True  # after the shutdown drain
    add_finals(store, 1)
    box.acked(pub.mid(first[0]))
    assert pub.seqs() == first and sent(store) == set(first)
