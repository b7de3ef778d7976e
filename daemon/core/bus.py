"""Fan-out of the core's events (state, partials, finals, job progress) to listeners such as `GET /api/events`.

Only the loop emits and subscribes. Each subscriber has a bounded queue: a client that does not read loses its
oldest events (counted), never slows the core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 256


class Subscription:
    def __init__(self, bus: EventBus, kinds: frozenset[str] | None) -> None:
        self.bus = bus
        self.kinds = kinds
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.dropped = 0

    def offer(self, event: dict[str, Any]) -> None:
        if self.kinds is not None and event.get("type") not in self.kinds:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()

    def close(self) -> None:
        self.bus.subscribers.discard(self)


class EventBus:
    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()

    def subscribe(self, kinds: frozenset[str] | None = None) -> Subscription:
        sub = Subscription(self, kinds)
        self.subscribers.add(sub)
        return sub

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        event = {"type": kind, **data}
        for sub in list(self.subscribers):
            sub.offer(event)
