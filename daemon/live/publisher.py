"""Publisher thread: sends finals from the on-disk outbox in `seq` order, QoS 1, one at a time, marking each
sent only after the broker acknowledged it. A dead broker just leaves rows unsent until it comes back."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

from daemon.live.plumbing import Heartbeat
from daemon.mqtt.client import Publisher
from daemon.store.db import Store

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 5.0


class OutboxPublisher(threading.Thread):
    def __init__(self, store: Store, client: Publisher, topic: str, stop: threading.Event) -> None:
        super().__init__(name="publisher", daemon=True)
        self.store = store
        self.client = client
        self.topic = topic
        self.stop_event = stop
        self.heartbeat = Heartbeat("publisher", 30.0)
        self._wake = threading.Event()
        self.sent = 0
        self.latencies_ms: deque[int] = deque(maxlen=500)

    def notify(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self.heartbeat.beat()
            self.drain_once()

    def drain_once(self) -> bool:
        """Send what is unsent; True when the outbox is empty afterwards."""
        while self.client.connected:
            rows = self.store.unsent(50)
            if not rows:
                return True
            for seq, payload, speech_end in rows:
                if payload.get("latency_ms") is None and speech_end:
                    payload["latency_ms"] = max(0, round((time.time() - speech_end) * 1000))
                if not self.client.publish_confirmed(
                    self.topic, json.dumps(payload, ensure_ascii=False), ACK_TIMEOUT_S
                ):
                    log.info("final seq %d not acknowledged; will retry", seq)
                    return False
                self.store.mark_sent(seq)
                self.sent += 1
                if payload.get("latency_ms") is not None:
                    self.latencies_ms.append(int(payload["latency_ms"]))
                self.heartbeat.beat()
        return False

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.drain_once():
                return True
            time.sleep(0.1)
        return False
