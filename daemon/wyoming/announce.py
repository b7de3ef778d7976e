"""Zeroconf (mDNS) announcement of the Wyoming service as `_wyoming._tcp`, as Home Assistant's add-ons do."""

from __future__ import annotations

import logging
import socket
from typing import Any

log = logging.getLogger(__name__)
SERVICE = "_wyoming._tcp.local."
MDNS_GROUP = "224.0.0.251"


def lan_address(bind: str) -> str | None:
    """The address Home Assistant should connect to: the bound one, or (bound to all) the interface that
    routes to the mDNS group (a UDP `connect` sends nothing). None for loopback."""
    if bind not in ("0.0.0.0", "", "::"):
        return None if bind.startswith("127.") or bind in ("localhost", "::1") else bind
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((MDNS_GROUP, 5353))
            host = str(s.getsockname()[0])
        except OSError:
            return None
    return None if host.startswith("127.") else host


class Announcement:
    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        self._zc: Any = None
        self._info: Any = None

    async def register(self) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        self._info = AsyncServiceInfo(
            SERVICE,
            f"{self.name}.{SERVICE}",
            addresses=[socket.inet_aton(self.host)],
            port=self.port,
            server=f"{self.name}.local.",
        )
        self._zc = AsyncZeroconf(ip_version=IPVersion.V4Only, interfaces=[self.host])
        await self._zc.async_register_service(self._info)
        log.info("wyoming: announced as %s on %s:%d", self._info.name, self.host, self.port)

    async def unregister(self) -> None:
        if self._zc is None:
            return
        try:
            await self._zc.async_unregister_service(self._info)
        finally:
            await self._zc.async_close()
            self._zc = None
