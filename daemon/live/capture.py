"""Capture thread: source -> bounded queue (drop-oldest, counted). Reopens a failed source with backoff.

Each block carries its stream offset (stamped by the source), so a dropped block is a gap downstream, not a
shift of every later time. `position` is the end offset of the newest block captured.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

from daemon.audio.block import END_OF_STREAM, Block
from daemon.audio.source import AudioSource
from daemon.errors import AsrboxError
from daemon.live.events import Post, SourceState
from daemon.live.plumbing import DropOldestQueue, Heartbeat
from daemon.transcript import Audio

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 2.0
LEVEL_EVERY = 3200  # samples (0.2 s at 16 kHz): the meter's figure goes to the loop about 5 times a second
FLOOR_DB = -100.0


@dataclass(frozen=True)
class Level:
    """The microphone's level over the last ~0.2 s, in dB relative to full scale."""

    rms_db: float
    peak_db: float


def _db(value: float) -> float:
    return round(max(FLOOR_DB, 20.0 * math.log10(value)) if value > 0 else FLOOR_DB, 1)


class _Meter:
    """Sum of squares and peak of the blocks since the last report: a dot product and a max per block."""

    def __init__(self) -> None:
        self.squares, self.peak, self.samples = 0.0, 0.0, 0

    def add(self, pcm: Audio) -> Level | None:
        if pcm.size == 0:
            return None
        self.squares += float(np.dot(pcm, pcm))
        self.peak = max(self.peak, float(np.max(np.abs(pcm))))
        self.samples += int(pcm.size)
        if self.samples < LEVEL_EVERY:
            return None
        level = Level(_db(math.sqrt(self.squares / self.samples)), _db(self.peak))
        self.squares, self.peak, self.samples = 0.0, 0.0, 0
        return level


class Capture(threading.Thread):
    def __init__(self, source: AudioSource, out: DropOldestQueue[Block], post: Post) -> None:
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.out = out
        self.post = post
        self.stop_event = threading.Event()
        self.heartbeat = Heartbeat("capture", 10.0)
        self.opened = threading.Event()
        self.failures = 0
        self.position = 0
        self.meter = _Meter()

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.source.close()

    def _run(self) -> None:
        backoff = 0.25
        while not self.stop_event.is_set():
            if not self.opened.is_set():
                if not self._open():
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                backoff = 0.25
            try:
                block = self.source.read()
            except AsrboxError as exc:
                log.warning("audio source failed: %s; reopening", exc)
                self._failed(str(exc))
                self.source.close()
                self.opened.clear()
                continue
            self.heartbeat.beat()
            if block is None:
                self.out.put(END_OF_STREAM)
                log.info("audio source %s ended", self.source.name)
                return
            self.out.put(block)
            self.position = block.end  # after the put: a stop at this offset still sees the block
            level = self.meter.add(block.pcm)
            if level is not None:
                self.post(level)

    def _open(self) -> bool:
        try:
            self.source.open()
        except AsrboxError as exc:
            self._failed(str(exc))
            self.heartbeat.beat()  # waiting for the source is a known state
            return False
        self.opened.set()
        self.post(SourceState(True, None))
        return True

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.post(SourceState(False, reason))
