"""uvicorn on the core's event loop: one process, one model, one owner of state.

The socket is bound here (a port in use is a one-line config error, not uvicorn's `sys.exit`), and uvicorn's
own signal handling is off: SIGTERM belongs to the core, which stops this server as one of its shutdown steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING

import uvicorn

from daemon.errors import ConfigError
from daemon.listen import listen_socket
from daemon.settings import HttpSettings

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)
STOP_S = 3.0
MAX_CONNECTIONS = 256  # open connections and tasks; the console's event streams count too


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the core owns SIGTERM/SIGINT


def bind_socket(s: HttpSettings) -> socket.socket:
    return listen_socket("http", s.bind, s.port)


class HttpServer:
    def __init__(self, core: App) -> None:
        from daemon.http.app import create_app

        s = core.settings.http
        self.settings = s
        self.scheme = "https" if s.tls_cert else "http"
        self.socket = bind_socket(s)
        config = uvicorn.Config(
            create_app(core),
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=str(s.tls_cert) if s.tls_cert else None,
            ssl_keyfile=str(s.tls_key) if s.tls_key else None,
            timeout_graceful_shutdown=int(STOP_S),
            server_header=False,
            limit_concurrency=MAX_CONNECTIONS,  # past it: 503 at once, so stalled clients cannot pile up
        )
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{port}/"

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.socket]), name="http")
        while not self.server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            exc = self._task.exception()
            raise ConfigError(f"config error: http: the server did not start: {exc}")
        log.info("HTTP API and console on %s", self.url)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(self._task, STOP_S + 2)
        except TimeoutError:
            self.server.force_exit = True
            self._task.cancel()
        self.socket.close()
