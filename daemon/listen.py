"""A listening TCP socket for the daemon's servers (HTTP, Wyoming), bound before the server starts: a port in
use is a one-line config error, not a server's own exit."""

from __future__ import annotations

import socket

from daemon.errors import ConfigError


def listen_socket(section: str, bind: str, port: int, backlog: int = 128) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so (proto 0 left every keep-alive
    # response waiting ~40 ms for the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"config error: {section}: cannot listen on {bind}:{port}: {exc.strerror}") from None
    return sock
