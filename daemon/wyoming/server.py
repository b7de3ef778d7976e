"""The Wyoming server: an asyncio TCP server on the core's loop, one `Session` task per connection.

The socket is bound when the daemon is built (a port in use is a one-line config error); connections over
`MAX_CLIENTS` get an `error` and are closed; stopping closes the listener and every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from wyoming.error import Error

from daemon.listen import listen_socket
from daemon.wyoming.announce import Announcement, lan_address
from daemon.wyoming.info import info_event
from daemon.wyoming.session import Session
from daemon.wyoming.wire import MAX_LINE, write_event

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)
MAX_CLIENTS = 16
STOP_S = 2.0


class WyomingServer:
    def __init__(self, core: App) -> None:
        self.core = core
        self.settings = core.settings.wyoming
        self.socket = listen_socket("wyoming", self.settings.bind, self.settings.port, backlog=32)
        self.info = info_event(core.settings, core.engine.info)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._announcement: Announcement | None = None

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"tcp://{f'[{host}]' if ':' in host else host}:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self.socket, limit=MAX_LINE)
        log.info("Wyoming speech-to-text on %s", self.address)
        if self.settings.zeroconf:
            await self._announce()

    async def _announce(self) -> None:
        host = lan_address(self.settings.bind)
        if host is None:
            log.warning("wyoming: zeroconf is on but the server listens on loopback only: nothing announced")
            return
        self._announcement = Announcement(f"asrbox-{self.core.settings.mqtt.device_id}", host, self.settings.port)
        try:
            await self._announcement.register()
        except Exception as exc:  # mDNS is a convenience: the server runs without it
            log.warning("wyoming: zeroconf announcement failed: %s", exc)
            self._announcement = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._sessions) >= MAX_CLIENTS:
            with contextlib.suppress(ConnectionError):
                await write_event(Error(text="too many connections", code="busy").event(), writer)
            writer.close()
            return
        assert task is not None
        self._sessions.add(task)
        try:
            await Session(self.core, self.info, reader, writer).run()
        except asyncio.CancelledError:
            pass  # stop(): end as a finished task (asyncio's stream callback reads its result and would log this)
        except Exception as exc:  # a bug in one session must not reach the loop's exception handler
            log.error("wyoming: session failed: %s: %s", type(exc).__name__, exc)
        finally:
            self._sessions.discard(task)

    async def stop(self) -> None:
        if self._announcement is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._announcement.unregister(), STOP_S)
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=STOP_S)
        self.socket.close()
