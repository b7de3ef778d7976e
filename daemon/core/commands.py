"""Commands on the loop: MQTT commands and actions from integrations, one at a time, in arrival order.

The queue is bounded: past `COMMAND_QUEUE` waiting items a command is refused at once with a `busy` reply
(counted), an action is dropped (counted). Any error while handling a command becomes an `ok: false` reply
with one line; the box keeps working.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon.mqtt import payloads
from daemon.mqtt.client import Command
from daemon.mqtt.commands import CommandError, HotwordsCmd, ListeningCmd, PronounceCmd, StartCmd, parse

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)

COMMAND_QUEUE = 100

Item = Command | Callable[[], object]


class CommandDesk:
    def __init__(self, app: App, maxsize: int = COMMAND_QUEUE) -> None:
        self.app = app
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize)
        self.dropped = 0

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self._serve(), name="commands")

    def intake(self, item: Item) -> None:
        """On the loop: queue a command or action, or refuse it when the queue is full."""
        if isinstance(item, Command) and item.retained:
            log.info("ignoring retained command %r", item.name)
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:  # a flood: refuse at once (counted) rather than queue without bound
            self.dropped += 1
            if isinstance(item, Command):
                busy = {"ok": False, "error": "busy: too many commands, try again", "request_id": None}
                self.app.client.reply(item, busy)
            else:
                log.warning("command queue full: an integration's action was dropped")

    async def _serve(self) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, Command):
                await self.handle(item)
                continue
            try:
                result = item()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # an integration's action must not stop the daemon
                log.error("action failed: %s: %s", type(exc).__name__, exc)
                log.debug("action failure", exc_info=True)

    async def handle(self, cmd: Command) -> None:
        request_id: Any = None
        try:
            parsed = parse(cmd)
            request_id = parsed.request_id
            result = await self._execute(cmd.name, parsed)
            reply = {"ok": True, "error": None, "request_id": request_id, **result}
        except CommandError as exc:
            log.info("rejected command %r: %s", cmd.name, exc)
            reply = {"ok": False, "error": str(exc), "request_id": exc.request_id}
        except Exception as exc:  # a bug must answer too, and leave the box working
            log.error("command %r failed: %s: %s", cmd.name, type(exc).__name__, exc)
            log.debug("command failure", exc_info=True)
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}", "request_id": request_id}
        self.app.client.reply(cmd, reply)

    async def _execute(self, name: str, parsed: Any) -> dict[str, Any]:
        app = self.app
        if isinstance(parsed, StartCmd):
            return {"session_id": await app.start_session(parsed.session_name, parsed.language)}
        if name == "stop":
            return {"session_id": (await app.stop_session()).get("id")}
        if isinstance(parsed, HotwordsCmd):
            app.hotwords = merged_hotwords(app.hotwords, parsed.set, parsed.add, parsed.remove)
            app.refresh_context()
            return {"hotwords": list(app.hotwords)}
        if isinstance(parsed, ListeningCmd):
            if parsed.on:
                return {"session_id": await app.start_session(None, None)}
            return {"session_id": (await app.stop_session()).get("id")}
        if isinstance(parsed, PronounceCmd):
            try:
                return app.integrations.set_target(parsed.target, parsed.learner, parsed.language)
            except ValueError as exc:
                raise CommandError(str(exc), parsed.request_id) from None
        if name == "ping":
            return payloads.ping(app.state, time.monotonic() - app.started_mono)
        return {}


def merged_hotwords(
    current: tuple[str, ...], set_: list[str] | None, add: list[str] | None, remove: list[str] | None
) -> tuple[str, ...]:
    """The session list after a `hotwords` command: `set` replaces, then `add`, then `remove`."""

    def norm(w: str) -> str:
        return unicodedata.normalize("NFC", w).strip()

    words = [norm(w) for w in set_] if set_ is not None else list(current)
    for w in add or []:
        if norm(w) not in words:
            words.append(norm(w))
    gone = {norm(w) for w in remove or []}
    return tuple(w for w in words if w not in gone)
