"""The only sender of finals: the on-disk outbox, in `seq` order, QoS 1, exactly once per process.

Runs on the core's loop. A row handed to paho is in flight until its PUBACK arrives (`acked(mid)`); it is
never handed over again in this process, since paho itself re-sends it after a reconnect. Only a successful
PUBACK marks the row sent: one with an MQTT 5 failure code (an ACL, a quota) leaves it unsent, is reported,
and the outbox tries again from that seq after `RETRY_REFUSED_S`. Rows still unsent when the process stops
are sent by the next one (at least once across a crash; subscribers dedupe on `id`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable

from daemon.errors import StoreError
from daemon.mqtt.client import Publisher
from daemon.store.db import Store

log = logging.getLogger(__name__)

WINDOW = 16  # finals in flight at once (paho's own in-flight limit is 20)
RETRY_REFUSED_S = 30.0


class Outbox:
    def __init__(
        self, store: Store, client: Publisher, topic: str, on_refused: Callable[[int, str], None] | None = None
    ) -> None:
        self.store = store
        self.client = client
        self.topic = topic
        self.on_refused = on_refused
        self.connected = False
        self.closed = False  # after the shutdown drain: acknowledgements are still recorded, nothing more sent
        self._resume_at = 0.0  # after a refused PUBACK, nothing is handed over before this (monotonic)
        self._in_flight: dict[int, int] = {}  # paho message id -> seq
        self._highest = 0  # the highest seq handed to paho
        self._idle = asyncio.Event()
        self.sent = 0
        self.latencies_ms: deque[int] = deque(maxlen=500)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def pump(self) -> None:
        """Hand the next unsent rows to paho, up to the window."""
        if not self.connected or self.closed or time.monotonic() < self._resume_at:
            return
        while len(self._in_flight) < WINDOW:
            try:
                rows = self.store.unsent(WINDOW - len(self._in_flight), after_seq=self._highest)
            except StoreError as exc:
                log.error("outbox: %s", exc)
                return
            if not rows:
                break
            flying = set(self._in_flight.values())
            for seq, payload, speech_end in rows:
                if seq in flying:  # handed over before a refused seq before it: paho holds it still
                    self._highest = seq
                    continue
                if payload.get("latency_ms") is None and speech_end:
                    payload["latency_ms"] = max(0, round((time.time() - speech_end) * 1000))
                mid = self.client.publish_tracked(self.topic, json.dumps(payload, ensure_ascii=False))
                if mid is None:  # paho's queue is full: try again on the next pump
                    self._check_idle()
                    return
                self._in_flight[mid] = seq
                self._highest = seq
                if payload.get("latency_ms") is not None:
                    self.latencies_ms.append(int(payload["latency_ms"]))
        self._check_idle()

    def acked(self, mid: int, refused: str | None = None) -> None:
        seq = self._in_flight.pop(mid, None)
        if seq is None:
            return  # another message's acknowledgement (state, replies)
        if refused is not None:  # not delivered: stays unsent, sent again from this seq later
            log.error("outbox: the broker refused final seq %d: %s", seq, refused)
            self._highest = min(self._highest, seq - 1)
            self._resume_at = time.monotonic() + RETRY_REFUSED_S
            if self.on_refused is not None:
                self.on_refused(seq, refused)
            return
        try:
            self.store.mark_sent(seq)
        except StoreError as exc:  # sent, but the next start sends it again: at least once
            log.error("outbox: cannot mark seq %d sent: %s", seq, exc)
        self.sent += 1
        self.pump()

    def _check_idle(self) -> None:
        if self._in_flight:
            self._idle.clear()
            return
        try:
            empty = not self.store.unsent(1, after_seq=self._highest)
        except StoreError:
            empty = False
        if empty:
            self._idle.set()
        else:
            self._idle.clear()

    async def drain(self, timeout: float) -> bool:
        """Wait (do not send) until every stored final is acknowledged; False if the time ran out."""
        self.pump()
        self._check_idle()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("outbox: %d final(s) still unacknowledged at shutdown; sent on the next start", self.backlog())
            return False
        return True

    def backlog(self) -> int:
        try:
            return self.store.outbox_backlog()
        except StoreError:
            return -1
