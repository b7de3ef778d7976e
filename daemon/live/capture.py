"""Capture thread: source -> bounded queue (drop-oldest, counted). Reopens a failed source with backoff."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from daemon.audio.decode import Audio
from daemon.audio.source import AudioSource
from daemon.errors import AsrboxError
from daemon.live.plumbing import DropOldestQueue, Heartbeat

log = logging.getLogger(__name__)

END: Audio = np.zeros(0, dtype=np.float32)  # marker (by identity) put on the queue when a source ends
BACKOFF_MAX_S = 2.0


class Capture(threading.Thread):
    def __init__(
        self,
        source: AudioSource,
        out: DropOldestQueue[Audio],
        on_state: Callable[[bool, str | None], None],
        stop: threading.Event,
    ) -> None:
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.out = out
        self.on_state = on_state
        self.stop_event = stop
        self.heartbeat = Heartbeat("capture", 10.0)
        self.opened = False
        self.ended = False
        self.failures = 0

    def run(self) -> None:
        backoff = 0.25
        while not self.stop_event.is_set():
            if not self.opened:
                try:
                    self.source.open()
                except AsrboxError as exc:
                    self.failures += 1
                    self.on_state(False, str(exc))
                    self.heartbeat.beat()  # waiting for the source is a known state
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                self.opened = True
                backoff = 0.25
                self.on_state(True, None)
            try:
                block = self.source.read()
            except AsrboxError as exc:
                log.warning("audio source failed: %s; reopening", exc)
                self.failures += 1
                self.on_state(False, str(exc))
                self.source.close()
                self.opened = False
                continue
            self.heartbeat.beat()
            if block is None:
                self.ended = True
                self.out.put(END)
                log.info("audio source %s ended", self.source.name)
                break
            self.out.put(block)
        self.source.close()
