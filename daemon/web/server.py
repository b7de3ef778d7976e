"""A small static HTTP server for the caption page (`captions.enabled`), on its own thread.

It serves only the files shipped in daemon/web/static and `/config.json` (the broker's WebSocket URL and
this box's topic root: nothing secret). GET and HEAD only; no directory listings. Any static server can
serve the same folder instead.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError
from daemon.settings import CaptionsSettings, MqttSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"


class _Handler(SimpleHTTPRequestHandler):
    config: bytes = b"{}"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/config.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(self.config)))
            self.end_headers()
            self.wfile.write(self.config)
            return
        if path in ("/", ""):
            self.path = "/captions.html"
        if path.endswith("/") and path != "/":
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("captions http: " + format, *args)


class CaptionServer:
    def __init__(self, s: CaptionsSettings, mqtt: MqttSettings) -> None:
        ws = s.websocket_url or ""
        config = {"websocket_url": ws, "prefix": mqtt.prefix, "device_id": mqtt.device_id}
        handler = type("Handler", (_Handler,), {"config": json.dumps(config).encode()})
        try:
            self.httpd = ThreadingHTTPServer((s.bind, s.port), partial(handler, directory=str(STATIC)))
        except OSError as exc:
            raise ConfigError(f"config error: captions: cannot listen on {s.bind}:{s.port}: {exc.strerror}") from None
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="captions", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("caption page on http://%s:%d/", *self.httpd.server_address[:2])

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
