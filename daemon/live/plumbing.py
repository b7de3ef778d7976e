"""Bounded hand-over between threads, each with its drop policy and a drop counter, and heartbeats."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded FIFO; when full, the oldest item is dropped and counted (capture must never block)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._cond:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float) -> T | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)


class LatestSlot(Generic[T]):
    """Holds only the newest item; an item replaced before anyone took it is counted as dropped."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._lock:
            if self._item is not None:
                self.dropped += 1
            self._item = item

    def take(self) -> T | None:
        with self._lock:
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._lock:
            self._item = None

    def __bool__(self) -> bool:
        return self._item is not None


class Heartbeat:
    """A stage's proof of progress; the watchdog is fed only while every stage beats."""

    def __init__(self, name: str, max_silence_s: float) -> None:
        self.name = name
        self.max_silence_s = max_silence_s
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def healthy(self, now: float | None = None) -> bool:
        return ((now or time.monotonic()) - self.last) <= self.max_silence_s
