"""The loop's clock: every half second the watchdog (fed only while every stage makes progress), the outbox
pump, the end of a finite source; every minute retention (in a worker thread, its own SQLite connection) and
diagnostics; `state` republished when the backlog changes."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from typing import TYPE_CHECKING, Any

from daemon.errors import AsrboxError

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)

TICK_S = 0.5
DIAGNOSTICS_EVERY_S = 60.0
RETENTION_EVERY_S = 60.0


class Supervisor:
    def __init__(self, app: App) -> None:
        self.app = app
        self._state_backlog = 0
        self._state_published = 0.0

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self._ticker(), name="ticker")

    async def _ticker(self) -> None:
        app = self.app
        next_diag = time.monotonic() + 5.0
        next_retention = time.monotonic()
        retention: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(TICK_S)
            self._supervise()
            app.outbox.pump()
            app.utterances.feed()  # after a store error, the next waiting final is tried again
            now = time.monotonic()
            if now >= next_retention and (retention is None or retention.done()):
                retention = asyncio.create_task(self._retention())
                next_retention = now + RETENTION_EVERY_S
            if now >= next_diag:
                self._diagnostics()
                next_diag = now + DIAGNOSTICS_EVERY_S
            self._backlog_changed()
            if app.exit_at_end and app.source_ended and app.utterances.backlog == 0:
                log.info("source ended and every utterance is transcribed; exiting")
                app.request_stop()

    def stages(self) -> list[Any]:
        return [self.app.capture, self.app.listener, self.app.worker]

    def healthy(self) -> bool:
        app, now = self.app, time.monotonic()
        for t in self.stages():
            finished_ok = t in (app.capture, app.listener) and app.listener.ended.is_set()
            if not finished_ok and (not t.is_alive() or not t.heartbeat.healthy(now)):
                return False
        return True

    def _supervise(self) -> None:
        app = self.app
        if self.healthy():
            app.notifier.watchdog()
            if app.state == "error" and (app.reason or "").startswith("stage stalled"):
                log.info("every stage makes progress again")
                app.set_state("listening" if app.listening else "idle", None)
            return
        dead = [t.name for t in self.stages() if not t.is_alive() or not t.heartbeat.healthy()]
        if app.state != "error":
            log.error("stage(s) not making progress: %s; withholding the watchdog", ", ".join(dead))
            app.set_state("error", f"stage stalled: {', '.join(dead)}")

    async def _retention(self) -> None:
        app = self.app
        try:
            status = await asyncio.to_thread(app.retention.run)
        except AsrboxError as exc:
            log.error("retention: %s", exc)
            return
        u = app.utterances
        if status.low and u.archive_audio:
            u.archive_audio = False
            msg = f"disk low: {status.free_mb} MB free (< {app.settings.store.min_free_mb}); audio not archived"
            app.failure("disk_low", msg)
            app.set_state(app.state, msg)
        elif not status.low and not u.archive_audio:
            u.archive_audio = True
            log.info("disk space back (%d MB free): archiving audio again", status.free_mb)
            app.set_state(app.state, None)

    def state_published(self, backlog: int) -> None:
        self._state_backlog = backlog
        self._state_published = time.monotonic()

    def _backlog_changed(self) -> None:
        """`state` carries the backlog: republish when it changes (at most every 2 s)."""
        now = time.monotonic()
        if self.app.utterances.backlog != self._state_backlog and now - self._state_published >= 2.0:
            self.app.publish_state()

    def status_line(self) -> str:
        app = self.app
        return f"{app.state}; backlog {app.utterances.backlog}; outbox {app.outbox.backlog()}"

    def _diagnostics(self) -> None:
        app = self.app
        app.client.publish(app.topics.diagnostics, json.dumps(self.diagnostics()), qos=0, retain=True)
        app.notifier.status(self.status_line())

    def diagnostics(self) -> dict[str, Any]:
        """The figures `diagnostics` carries (MQTT, `GET /api/diagnostics`, `/metrics`)."""
        app = self.app
        lat = list(app.outbox.latencies_ms)
        data: dict[str, Any] = {
            "uptime_s": round(time.monotonic() - app.started_mono, 1),
            "backlog": app.utterances.backlog,
            "outbox": app.outbox.backlog(),
            "dropped_frames": app.blocks.dropped,
            "dropped_partials": app.worker.partials_dropped,
            "disk_free_mb": app.retention.free_mb(),
            "last_rtf": app.worker.last_rtf,
            "latency_ms_p50": statistics.median(lat) if lat else None,
            "finals": app.utterances.done,
            "source_failures": app.capture.failures,
            "asr_failures": app.worker.failures,
            "utterances_failed": app.utterances.failed,
            "commands_dropped": app.desk.dropped,
            "archiving_audio": app.utterances.archive_audio,
            "engine_calls_waiting": app.worker.calls_waiting,
        }
        server = app.server_state()
        if server is not None:
            data["asr_server"] = server
        return data
