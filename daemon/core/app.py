"""The daemon's core: one asyncio event loop that owns all mutable state.

State, the session, hotwords, the command queue, the outbox publisher and every side effect on the outside
world (store writes, MQTT publishes) belong to the loop. Threads do only what blocks - capture, VAD and
segmenting, inference - and post immutable values to the loop (`daemon.live.events`); paho's network thread
posts MQTT events the same way. Nothing here is guarded by a lock, because only the loop writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.asr.engine import Engine, load_engine
from daemon.audio.block import Block
from daemon.audio.source import AudioSource
from daemon.audio.vad import load_vad
from daemon.batch.transcribe import Outcome
from daemon.core.bus import EventBus
from daemon.core.commands import CommandDesk
from daemon.core.files import FileOptions, FileTranscription
from daemon.core.jobs import JobRunner
from daemon.core.outbox import Outbox
from daemon.core.supervisor import Supervisor
from daemon.core.utterances import Utterances
from daemon.errors import AsrboxError
from daemon.integrations.hub import Integrations
from daemon.live.capture import Capture, Level
from daemon.live.events import (
    DecodeContext,
    FinalError,
    FinalText,
    ListenerIdle,
    PartialText,
    SourceEnded,
    SourceState,
    SpeechEdge,
    UtteranceEnded,
)
from daemon.live.listener import Listener
from daemon.live.partials import PartialTracker
from daemon.live.plumbing import DropOldestQueue
from daemon.live.worker import AsrWorker
from daemon.mqtt import payloads
from daemon.mqtt.client import Command, MqttAcked, MqttClient, MqttConnected, MqttDisconnected
from daemon.mqtt.topics import Topics
from daemon.sdnotify import Notifier
from daemon.settings import Settings
from daemon.store.audio import remove_partials
from daemon.store.db import Store, iso, utc_now
from daemon.store.hotwords import saved_terms
from daemon.store.records import save_file
from daemon.store.retention import Retention
from daemon.text.pipeline import TextPipeline
from daemon.transcript import DecodeOptions

if TYPE_CHECKING:
    from daemon.http.server import HttpServer
    from daemon.wyoming.server import WyomingServer

log = logging.getLogger(__name__)

CAPTURE_QUEUE_BLOCKS = 100  # 10 s of 100 ms blocks
LISTENER_ANSWER_S = 5.0
DRAIN_WORKER_S = 10.0
WORKER_JOIN_S = 20.0  # a decode in hand (the full-window cascade on a busy CPU) may take this long
DRAIN_OUTBOX_S = 3.0
EX_SOFTWARE = 70
MAX_TRACKERS = 8


class App:
    def __init__(self, settings: Settings, source: AudioSource, exit_at_end: bool = False) -> None:
        self.settings = settings
        self.source = source
        self.exit_at_end = exit_at_end
        self.topics = Topics(settings.mqtt.prefix, settings.mqtt.device_id)
        self.notifier = Notifier()
        self.started_mono = time.monotonic()
        # ---- state owned by the loop
        self.state = "idle"
        self.reason: str | None = None
        self.since = utc_now()
        self.session_id: str | None = None
        self.listening = False
        self.language = settings.asr.language
        self.hotwords: tuple[str, ...] = ()  # the session's, set over MQTT
        self.box_hotwords = settings.text.terms()
        self.source_ended = False
        self._languages: deque[str] = deque(maxlen=5)  # of the latest finals: a prior for language detection
        self._trackers: dict[str, PartialTracker] = {}  # utterances with partials and no final yet (a few)
        self._idle_waiters: dict[int, asyncio.Future[None]] = {}
        self._tokens = 0
        self._fatal: BaseException | None = None
        self._stop_requested = threading.Event()  # set from any thread; the loop notices on its next tick
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.bus = EventBus()
        self.http: HttpServer | None = None
        self.wyoming: WyomingServer | None = None

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        s = self.settings
        self.store = Store(s.store.path)
        saved = saved_terms(s.store.path)
        if saved is not None:  # the list last set over the HTTP API replaces the config's
            self.box_hotwords = saved
        removed = remove_partials(s.store.path)
        if removed:
            log.info("removed %d half-written audio file(s) left by a crash", removed)
        self.notifier.status("loading the model")
        self.engine: Engine = load_engine(s.asr)
        self.text = TextPipeline(s.text)
        self._warm = threading.Thread(target=self.text.warm, name="itn-warm", daemon=True)
        self._warm.start()
        self.blocks: DropOldestQueue[Block] = DropOldestQueue(CAPTURE_QUEUE_BLOCKS)
        self.client = MqttClient(s.mqtt, self.topics, self.post)
        self.outbox = Outbox(self.store, self.client, self.topics.final, self._final_refused)
        self.capture = Capture(self.source, self.blocks, self.post)
        self.worker = AsrWorker(self.engine, self.text, self.context(), self.post)
        self.listener = Listener(self.blocks, load_vad(s.vad.engine), s.vad, self.post, self.worker)
        self.utterances = Utterances(self)
        self.desk = CommandDesk(self)
        self.supervisor = Supervisor(self)
        self.integrations = Integrations(s, self.topics, self.client, self.store, self)
        self.retention = Retention(self.store, s.store)
        self.files = FileTranscription(self)
        self.jobs = JobRunner(self)
        if s.http.enabled:
            from daemon.http.server import HttpServer

            self.http = HttpServer(self)  # binds now: a port in use is a one-line config error
        if s.wyoming.enabled:
            from daemon.wyoming.server import WyomingServer

            self.wyoming = WyomingServer(self)  # binds now, like HTTP

    def context(self) -> DecodeContext:
        """What recognition depends on now: language, hotwords (box + session), recent language."""
        terms = tuple(dict.fromkeys((*self.box_hotwords, *self.hotwords)))
        asr = self.settings.asr
        options = DecodeOptions(
            language=None if self.language == "auto" else self.language,
            hotwords=self.text.engine_hotwords(terms),
            beam_size=asr.live_beam_size,
            short_first=asr.live_short_window,
            language_hint=self._recent_language(),
        )
        return DecodeContext(options, terms)

    def refresh_context(self) -> None:
        self.worker.set_context(self.context())

    def _recent_language(self) -> str | None:
        recent = list(self._languages)
        if len(recent) < 2:
            return None
        best = max(set(recent), key=recent.count)
        return best if recent.count(best) * 2 > len(recent) else None

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        """Run until SIGTERM/SIGINT, `request_stop()`, or (with exit_at_end) the end of the source."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):  # while the model loads; the loop takes over later
                signal.signal(sig, lambda *_: self.request_stop())
        rc = asyncio.run(self._main())
        worker = getattr(self, "worker", None)
        if worker is not None and worker.is_alive():
            # Still inside the engine's native code: letting the interpreter finalize under it aborts the
            # process. Everything is stored and closed by now; leave without finalizing.
            log.warning("the ASR worker did not finish its job in time; exiting without waiting for it")
            logging.shutdown()
            os._exit(rc)
        return rc

    def request_stop(self) -> None:
        """Thread-safe: ask the daemon to shut down in order."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)

    def post(self, event: object) -> None:
        """Thread-safe: hand a value from a thread to the loop."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
                loop.call_soon_threadsafe(self._on_event, event)

    def submit(self, action: Callable[[], object]) -> None:
        """Thread-safe: run `action` on the loop, in order with commands (integrations, GPIO)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.desk.intake, action)

    async def _main(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._build()
        tasks: list[asyncio.Task[None]] = []
        error: AsrboxError | None = None
        try:
            tasks = [self.desk.start()]  # commands are answered from the first connect on
            await self._start()
            tasks.append(self.supervisor.start())
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            for t in tasks:
                if t.done() and t.exception() is not None:
                    self._fail_hard(t.exception())
        except AsrboxError as exc:  # e.g. a GPIO line that cannot be had: one line, its own exit code
            error = exc
        except Exception as exc:
            self._fail_hard(exc)
        finally:
            for t in tasks:
                t.cancel()
            await self._shutdown()
        if error is not None:
            raise error
        return EX_SOFTWARE if self._fatal is not None else 0

    def _fail_hard(self, exc: BaseException | None) -> None:
        """An unexpected error in the loop: log it and shut down in order (systemd restarts the daemon)."""
        if exc is None:
            return
        self._fatal = exc
        log.error("internal error, shutting down in order: %s: %s", type(exc).__name__, exc)
        log.debug("internal error", exc_info=exc)
        if self._stop is not None:
            self._stop.set()

    async def _start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        if self._stop_requested.is_set():  # asked to stop while the model was loading
            return
        self.integrations.start()  # registers its subscriptions before the first connect
        self.client.start()
        self.utterances.recover()
        for t in (self.worker, self.listener, self.capture):
            t.start()
        self.jobs.start()
        if self.http is not None:
            await self.http.start()
        if self.wyoming is not None:
            await self.wyoming.start()
        if self.settings.session.listen_on_start:
            await self.start_session(None, None)
        await asyncio.to_thread(self.capture.opened.wait, 10.0)
        self.notifier.ready(self.supervisor.status_line())
        log.info("asrbox %s running: device %s, source %s", __version__, self.topics.root, self.source.name)

    async def _shutdown(self) -> None:
        """SIGTERM: capture stops -> the utterance in progress is flushed and persisted -> the worker finishes
        what it holds before a deadline (the rest stays pending) -> session closed -> the outbox drains briefly
        -> offline -> disconnect -> checkpoint. Each step runs even if an earlier one failed."""
        self.notifier.stopping()
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("http", self._stop_http),
            ("wyoming", self._stop_wyoming),
            ("jobs", self._stop_jobs),
            ("capture", self._stop_capture),
            ("listener", self._stop_listener),
            ("worker", self._stop_worker),
            ("session", self._close_session),
            ("outbox", self._drain_outbox),
            ("state", self._final_state),
            ("integrations", self._stop_integrations),
            ("mqtt", self._stop_mqtt),
            ("engine", self._close_engine),
            ("store", self._close_store),
        ]
        for name, step in steps:
            try:
                await step()
            except Exception as exc:
                log.error("shutdown: %s: %s", name, exc)
        log.info("asrbox stopped")

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()

    async def _stop_wyoming(self) -> None:
        if self.wyoming is not None:
            await self.wyoming.stop()

    async def _stop_jobs(self) -> None:
        await self.jobs.stop()

    async def _stop_capture(self) -> None:
        self.capture.stop_event.set()
        await _join(self.capture, 2.0)

    async def _stop_listener(self) -> None:
        self.listener.stop_event.set()
        await _join(self.listener, 5.0)
        await asyncio.sleep(0)  # let the events it posted last (its final utterance) run

    async def _stop_worker(self) -> None:
        deadline = time.monotonic() + DRAIN_WORKER_S
        while self.utterances.backlog and time.monotonic() < deadline and self.worker.is_alive():
            await asyncio.sleep(0.05)
        self.worker.stop()  # the job in hand is finished (its result still stored), the rest stays pending
        await _join(self.worker, WORKER_JOIN_S)
        await asyncio.sleep(0)
        self.utterances.close()  # from here a late result is dropped: its utterance stays pending

    async def _close_session(self) -> None:
        if self.session_id:
            await self.stop_session()

    async def _drain_outbox(self) -> None:
        await self.outbox.drain(DRAIN_OUTBOX_S)
        self.outbox.closed = True  # late acknowledgements are still recorded; nothing more is handed over

    async def _final_state(self) -> None:
        self.set_state("idle", "stopped")

    async def _stop_integrations(self) -> None:
        self.integrations.stop()

    async def _stop_mqtt(self) -> None:
        await asyncio.to_thread(self.client.stop)

    async def _close_engine(self) -> None:
        await _join(self._warm, 10.0)  # no thread may be inside a grammar or the model while the process exits
        self.engine.close()

    async def _close_store(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ health (the supervisor's)
    def healthy(self) -> bool:
        return self.supervisor.healthy()

    # ------------------------------------------------------------------ state and sessions
    def set_state(self, state: str, reason: str | None) -> None:
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason, self.since = state, reason, utc_now()
        self.publish_state()
        self.integrations.on_state(state)
        self.bus.emit("state", self.state_view())

    def state_view(self) -> dict[str, Any]:
        """The state as `state` on MQTT and `GET /api/state` show it."""
        return self._with_server(
            payloads.state(self.state, self.session_id, self.reason, self.since, self.utterances.backlog)
        )

    def server_state(self) -> dict[str, Any] | None:
        """The remote engine's ASR server (reachable or not, since when); None for a local engine."""
        server = getattr(self.engine, "server", None)
        return server.as_dict() if server is not None else None

    def _with_server(self, body: dict[str, Any]) -> dict[str, Any]:
        server = self.server_state()
        return body if server is None else {**body, "asr_server": server}

    def publish_state(self) -> None:
        backlog = self.utterances.backlog
        self.supervisor.state_published(backlog)
        body = self._with_server(payloads.state(self.state, self.session_id, self.reason, self.since, backlog))
        self.client.publish(self.topics.state, json.dumps(body), qos=1, retain=True)

    async def start_session(self, name: str | None, language: str | None) -> str:
        if self.session_id is None:
            self.session_id = self.store.start_session(name)
            self._publish_session("started", self.store.session(self.session_id) or {})
        if language:
            self.language = language
            self.refresh_context()
        if not self.listening:
            self.listening = True
            self.listener.listen(True, self.capture.position)
        source_ok = self.state != "error" or not (self.reason or "").startswith("source:")
        self.set_state("listening" if source_ok else "error", None if source_ok else self.reason)
        return self.session_id

    async def stop_session(self) -> dict[str, Any]:
        if self.listening:
            self.listening = False
            await self._listener_idle()  # the utterance in progress is persisted into this session first
        sid = self.session_id
        if sid is None:
            return {}
        self.session_id = None
        info = self.store.end_session(sid, self.store.session_stats(sid))
        self._publish_session("stopped", info)
        if self.state != "error":
            self.set_state("idle", None)
        return info

    async def _listener_idle(self) -> None:
        """Stop analysing at the current stream position and wait until the listener has flushed."""
        if not self.listener.is_alive():
            return
        self._tokens += 1
        token = self._tokens
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters[token] = waiter
        self.listener.listen(False, self.capture.position, token)
        try:
            await asyncio.wait_for(waiter, LISTENER_ANSWER_S)
        except TimeoutError:
            log.warning("the segmenter did not answer within %.0f s", LISTENER_ANSWER_S)
        finally:
            self._idle_waiters.pop(token, None)

    def _publish_session(self, event: str, info: dict[str, Any]) -> None:
        body = {
            "event": event,
            "session_id": info.get("id"),
            "name": info.get("name"),
            "started_at": info.get("started_at"),
            "ended_at": info.get("ended_at"),
            "summary": info.get("summary") or {},
        }
        self.client.publish(self.topics.session, json.dumps(body, ensure_ascii=False), qos=1)
        self.bus.emit("session", body)

    def failure(self, code: str, message: str, context: dict[str, Any] | None = None) -> None:
        log.error("%s: %s", code, message)
        self.client.publish(self.topics.error, json.dumps(payloads.error(code, message, context)), qos=1)
        self.integrations.on_failure(code, message)

    # ------------------------------------------------------------------ controls (integrations, GPIO)
    async def start_listening(self) -> None:
        await self.start_session(None, None)

    async def stop_listening(self) -> None:
        await self.stop_session()

    async def toggle_listening(self) -> None:
        if self.listening:
            await self.stop_session()
        else:
            await self.start_session(None, None)

    async def new_session(self) -> None:
        await self.stop_session()
        await self.start_session(None, None)

    def note_language(self, language: str) -> None:
        if language:
            self._languages.append(language)
            self.refresh_context()

    # ------------------------------------------------------------------ events from threads
    def _on_event(self, ev: object) -> None:
        try:
            self._dispatch(ev)
        except Exception as exc:
            self._fail_hard(exc)

    def _dispatch(self, ev: object) -> None:
        if isinstance(ev, MqttAcked):
            self.outbox.acked(ev.mid, ev.refused)
        elif isinstance(ev, UtteranceEnded):
            self.utterances.ended(ev)
        elif isinstance(ev, FinalText):
            self.utterances.transcribed(ev)
        elif isinstance(ev, FinalError):
            self.utterances.failed_once(ev)
        elif isinstance(ev, SpeechEdge):
            self._speech(ev)
        elif isinstance(ev, PartialText):
            self._partial(ev)
        elif isinstance(ev, Level):
            self.bus.emit("level", {"rms_db": ev.rms_db, "peak_db": ev.peak_db})
        elif isinstance(ev, Command):
            self.desk.intake(ev)
        elif isinstance(ev, ListenerIdle):
            waiter = self._idle_waiters.get(ev.token)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(ev, SourceState):
            self._source_state(ev)
        elif isinstance(ev, SourceEnded):
            self.source_ended = True
        elif isinstance(ev, MqttConnected):
            self._connected()
        elif isinstance(ev, MqttDisconnected):
            self.outbox.connected = False

    def _connected(self) -> None:
        self.outbox.connected = True
        self.publish_state()
        self.integrations.on_connect()
        self.outbox.pump()

    def _speech(self, ev: SpeechEdge) -> None:
        self.client.publish(self.topics.speech, "ON" if ev.on else "OFF", qos=0)
        if ev.on:
            self._trackers[ev.utterance_id] = PartialTracker.new()
            while len(self._trackers) > MAX_TRACKERS:
                self._trackers.pop(next(iter(self._trackers)))
            self.worker.hold_background(True)  # live first: no job window may start before this final
        elif not ev.kept:
            self.final_decided(ev.utterance_id)

    def final_decided(self, utterance_id: str) -> None:
        """The utterance's final is stored (or it failed): no partial of it is published any more."""
        self._trackers.pop(utterance_id, None)
        if not self._trackers:
            self.worker.hold_background(False)

    def _partial(self, ev: PartialText) -> None:
        tracker = self._trackers.get(ev.utterance_id)
        if tracker is None or not self.listening:
            return  # its final is already out, or listening stopped
        stable, unstable, rev = tracker.update(ev.text)
        started = iso(datetime.fromtimestamp(self.source.wall_time(ev.start), UTC))
        body = payloads.partial(self.session_id, ev.utterance_id, rev, stable, unstable, started)
        self.client.publish(self.topics.partial, json.dumps(body, ensure_ascii=False), qos=0)
        self.bus.emit("partial", body)

    def _source_state(self, ev: SourceState) -> None:
        if ev.ok:
            if self.state == "error" and (self.reason or "").startswith("source:"):
                self.set_state("listening" if self.listening else "idle", None)
            return
        reason = f"source: {ev.reason or 'audio source failed'}"
        if (self.state, self.reason) != ("error", reason):
            self.set_state("error", reason)
            self.failure("source_failed", ev.reason or "audio source failed")

    def _final_refused(self, seq: int, reason: str) -> None:
        self.failure(
            "final_refused", f"the broker refused final seq {seq} ({reason}); it stays in the outbox", {"seq": seq}
        )

    # ------------------------------------------------------------------ files (API, jobs, Wyoming)
    async def transcribe_file(
        self,
        path: Path,
        options: FileOptions,
        source: str,
        audio_path: str | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[Outcome, str]:
        """Transcribe one file now (ahead of jobs, after live finals) and record it; the record's id. Setting
        `stop` (the client went away) ends it after the window in hand."""
        outcome = await asyncio.to_thread(_first, self.files.run([path], options, interactive=True, stop=stop))
        return outcome, save_file(self.store, outcome, source, audio_path)  # one transaction, names with it

    def audio_path(self, rel: str) -> Path:
        return self.store.root / rel


def _first(outcomes: Iterator[Outcome]) -> Outcome:
    return next(iter(outcomes))


async def _join(thread: threading.Thread, timeout: float) -> None:
    if thread.ident is not None:  # started
        await asyncio.to_thread(thread.join, timeout)
