"""The daemon: composition root and supervisor.

Builds the stages (capture -> segmenter -> ASR worker -> outbox publisher, plus paho's network thread),
starts them in order, handles commands and signals on the main thread, feeds the systemd watchdog only
while every stage shows progress, and shuts down in order on SIGTERM.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import signal
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from daemon import __version__
from daemon.asr.engine import DecodeOptions, Engine, Transcript, load_engine
from daemon.audio.decode import Audio
from daemon.audio.source import AudioSource
from daemon.audio.vad import load_vad
from daemon.integrations.hub import Integrations
from daemon.live.capture import Capture
from daemon.live.listener import Job, Listener
from daemon.live.partials import PartialTracker
from daemon.live.plumbing import DropOldestQueue
from daemon.live.publisher import OutboxPublisher
from daemon.live.worker import AsrWorker, FinalDone
from daemon.mqtt import payloads
from daemon.mqtt.client import Command, MqttClient
from daemon.mqtt.commands import CommandError, HotwordsCmd, ListeningCmd, PronounceCmd, StartCmd, parse
from daemon.mqtt.topics import Topics
from daemon.sdnotify import Notifier
from daemon.settings import Settings
from daemon.store.audio import remove_partials
from daemon.store.db import Record, Store, iso, utc_now
from daemon.store.retention import Retention
from daemon.text.pipeline import TextPipeline

log = logging.getLogger(__name__)

CAPTURE_QUEUE_BLOCKS = 100  # 10 s of 100 ms blocks
COMMAND_QUEUE = 100
DIAGNOSTICS_EVERY_S = 60.0
DRAIN_WORKER_S = 10.0
DRAIN_OUTBOX_S = 3.0
RETENTION_EVERY_S = 60.0


class App:
    def __init__(self, settings: Settings, source: AudioSource, exit_at_end: bool = False) -> None:
        self.settings = settings
        self.source = source
        self.exit_at_end = exit_at_end
        self.topics = Topics(settings.mqtt.prefix, settings.mqtt.device_id)
        self.notifier = Notifier()
        self.stop_event = threading.Event()
        self.started_mono = time.monotonic()
        self.state = "idle"
        self.reason: str | None = None
        self.since = utc_now()
        self.session_id: str | None = None
        self.language = settings.asr.language
        self.hotwords: tuple[str, ...] = ()  # the session's, set over MQTT
        self.box_hotwords = settings.text.terms()
        self.listening = threading.Event()
        self.source_ok = True
        # MQTT commands and actions handed over by integrations, all run on the main thread
        self.commands: queue.Queue[Command | Callable[[], None]] = queue.Queue(maxsize=COMMAND_QUEUE)
        self.commands_dropped = 0
        self._partials: dict[int, tuple[str, PartialTracker]] = {}  # utterance start sample -> (id, tracker)
        self._lock = threading.Lock()
        self._languages: deque[str] = deque(maxlen=5)  # of the latest finals: a prior for language detection
        self._state_backlog = 0
        self._state_published = 0.0
        self.disk_free_mb = -1

    # ------------------------------------------------------------------ building
    def build(self) -> None:
        s = self.settings
        self.store = Store(s.store.path)
        removed = remove_partials(s.store.path)
        if removed:
            log.info("removed %d half-written audio file(s) left by a crash", removed)
        self.notifier.status("loading the model")
        self.engine: Engine = load_engine(s.asr)
        self.text = TextPipeline(s.text, s.asr.cache_dir)
        threading.Thread(target=self.text.warm, name="itn-warm", daemon=True).start()
        self.blocks: DropOldestQueue[Audio] = DropOldestQueue(CAPTURE_QUEUE_BLOCKS)
        self.client = MqttClient(s.mqtt, self.topics, self._on_command, self._on_connect)
        self.capture = Capture(self.source, self.blocks, self._on_source, self.stop_event)
        self.listener = Listener(
            self.blocks,
            load_vad(s.vad.engine),
            s.vad,
            self.store,
            self.source.wall_time,
            self,
            lambda: self.session_id,
            self.listening,
            self.stop_event,
        )
        self.worker = AsrWorker(
            self.engine,
            self.text,
            self.store,
            self._decode_options,
            self._terms,
            self._final_payload,
            self._on_final,
            self._on_partial,
            self.stop_event,
        )
        self.publisher = OutboxPublisher(self.store, self.client, self.topics.final, self.stop_event)
        self.integrations = Integrations(s, self.topics, self.client, self.store, self)
        self.retention = Retention(self.store, s.store)

    def _decode_options(self) -> DecodeOptions:
        lang = None if self.language == "auto" else self.language
        asr = self.settings.asr
        return DecodeOptions(
            language=lang,
            hotwords=self.text.engine_hotwords(self._terms()),
            beam_size=asr.live_beam_size,
            short_first=asr.live_short_window,
            language_hint=self._recent_language(),
        )

    def _terms(self) -> tuple[str, ...]:
        """The box's hotwords (config) followed by the session's (MQTT `hotwords` command)."""
        return tuple(dict.fromkeys((*self.box_hotwords, *self.hotwords)))

    def _recent_language(self) -> str | None:
        recent = list(self._languages)
        if len(recent) < 2:
            return None
        best = max(set(recent), key=recent.count)
        return best if recent.count(best) * 2 > len(recent) else None

    def _final_payload(self, rec: Record, t: Transcript, raw: str, processing_s: float, seq: int) -> dict[str, Any]:
        return payloads.final(rec, t, raw, self.engine.info, processing_s, seq, self.settings.mqtt.device_id)

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        self.build()
        self.integrations.start()  # registers its subscriptions before the first connect
        self.client.start()
        pending = self.store.pending_live()
        if pending:
            log.info("recovering %d utterance(s) stored but not transcribed before the last stop", len(pending))
            self.worker.recover(pending)
        for t in (self.worker, self.publisher, self.listener, self.capture):
            t.start()
        if self.settings.session.listen_on_start:
            self.start_session(None, None)
        self._wait_source_open(10.0)
        self.notifier.ready(self._status_line())
        log.info("asrbox %s running: device %s, source %s", __version__, self.topics.root, self.source.name)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop_event.set())
        next_diag = time.monotonic() + 5.0
        next_retention = 0.0
        while not self.stop_event.is_set():
            try:
                item = self.commands.get(timeout=0.5)
                if isinstance(item, Command):
                    self._handle_command(item)
                else:
                    item()
            except queue.Empty:
                pass
            except Exception:  # an integration's action must not stop the daemon
                log.exception("action failed")
            if self.stop_event.is_set():
                break
            self._supervise()
            if time.monotonic() >= next_retention:
                self._retention()
                next_retention = time.monotonic() + RETENTION_EVERY_S
            if time.monotonic() >= next_diag:
                self._diagnostics()
                next_diag = time.monotonic() + DIAGNOSTICS_EVERY_S
            self._backlog_changed()
            if self.exit_at_end and self.listener.ended.is_set() and self.worker.backlog == 0:
                self.publisher.drain(DRAIN_OUTBOX_S)
                log.info("source ended and every utterance is transcribed; exiting")
                break
        self.shutdown()
        return 0

    def _wait_source_open(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.capture.opened and not self.capture.ended and time.monotonic() < deadline:
            time.sleep(0.05)

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.stop_event.set()
        self.capture.join(2.0)
        self.listener.flush(5.0)
        self.listener.join(2.0)
        self.worker.drain(DRAIN_WORKER_S)
        self.worker.join(DRAIN_WORKER_S + 5.0)
        if self.session_id:
            self.stop_session()
        self.publisher.drain(DRAIN_OUTBOX_S)
        self._set_state("idle", "stopped")
        self.integrations.stop()
        self.client.stop()
        self.engine.close()
        self.store.close()
        log.info("asrbox stopped")

    # ------------------------------------------------------------------ health
    def stages(self) -> list[Any]:
        return [self.capture, self.listener, self.worker, self.publisher]

    def healthy(self) -> bool:
        now = time.monotonic()
        for t in self.stages():
            finished_ok = t in (self.capture, self.listener) and self.listener.ended.is_set()
            if not finished_ok and (not t.is_alive() or not t.heartbeat.healthy(now)):
                return False
        return True

    def _supervise(self) -> None:
        if self.healthy():
            self.notifier.watchdog()
        else:
            dead = [t.name for t in self.stages() if not t.is_alive() or not t.heartbeat.healthy()]
            log.error("stage(s) not making progress: %s; withholding the watchdog", ", ".join(dead))
            if self.state != "error":
                self._set_state("error", f"stage stalled: {', '.join(dead)}")

    def _retention(self) -> None:
        status = self.retention.run()
        self.disk_free_mb = status.free_mb
        if status.low and self.listener.archive_audio:
            self.listener.archive_audio = False
            msg = f"disk low: {status.free_mb} MB free (< {self.settings.store.min_free_mb}); audio not archived"
            self.failure("disk_low", msg)
            self._set_state(self.state, msg)
        elif not status.low and not self.listener.archive_audio:
            self.listener.archive_audio = True
            log.info("disk space back (%d MB free): archiving audio again", status.free_mb)
            self._set_state(self.state, None)

    def _backlog_changed(self) -> None:
        """`state` carries the backlog: republish when it changes (at most every 2 s)."""
        backlog = self.worker.backlog
        now = time.monotonic()
        if backlog != self._state_backlog and now - self._state_published >= 2.0:
            self._publish_state()

    def _status_line(self) -> str:
        return f"{self.state}; backlog {self.worker.backlog}; outbox {self.store.outbox_backlog()}"

    def _diagnostics(self) -> None:
        lat = list(self.publisher.latencies_ms)
        disk_free = self.retention.free_mb()
        data = {
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "backlog": self.worker.backlog,
            "outbox": self.store.outbox_backlog(),
            "dropped_frames": self.blocks.dropped,
            "dropped_partials": self.worker.partials_dropped,
            "disk_free_mb": disk_free,
            "last_rtf": self.worker.last_rtf,
            "latency_ms_p50": statistics.median(lat) if lat else None,
            "finals": self.worker.finals_done,
            "source_failures": self.capture.failures,
            "asr_failures": self.worker.failures,
            "commands_dropped": self.commands_dropped,
            "archiving_audio": self.listener.archive_audio,
        }
        self.client.publish(self.topics.diagnostics, json.dumps(data), qos=0, retain=True)
        self.notifier.status(self._status_line())

    # ------------------------------------------------------------------ state and sessions
    def _set_state(self, state: str, reason: str | None) -> None:
        with self._lock:
            if (state, reason) == (self.state, self.reason):
                return
            self.state, self.reason, self.since = state, reason, utc_now()
        self._publish_state()
        self.integrations.on_state(state)

    def _publish_state(self) -> None:
        self._state_backlog = self.worker.backlog
        self._state_published = time.monotonic()
        body = payloads.state(self.state, self.session_id, self.reason, self.since, self._state_backlog)
        self.client.publish(self.topics.state, json.dumps(body), qos=1, retain=True)

    def start_session(self, name: str | None, language: str | None) -> str:
        if self.session_id is None:
            self.session_id = self.store.start_session(name)
            started = self.store.session(self.session_id) or {}
            self._publish_session("started", started)
        if language:
            self.language = language
        self.listening.set()
        self._set_state("listening" if self.source_ok else "error", None if self.source_ok else self.reason)
        return self.session_id

    def stop_session(self) -> dict[str, Any]:
        if self.listener.is_alive():
            self.listener.flush()  # the utterance in progress belongs to the session
        self.listening.clear()
        sid = self.session_id
        if sid is None:
            return {}
        self.session_id = None
        info = self.store.end_session(sid, self.store.session_stats(sid))
        self._publish_session("stopped", info)
        if self.state != "error":
            self._set_state("idle", None)
        return info

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

    # ------------------------------------------------------------------ listener events (segmenter thread)
    def speech(self, on: bool) -> None:
        self.client.publish(self.topics.speech, "ON" if on else "OFF", qos=0)

    def partial(self, job: Job) -> None:
        if self.listening.is_set():
            self.worker.add_partial(job)

    def speculative(self, job: Job) -> None:
        self.worker.add_speculative(job)

    def utterance(self, job: Job, on_disk: bool = True) -> None:
        self.worker.add_final(job, on_disk)

    def failure(self, code: str, message: str) -> None:
        log.error("%s: %s", code, message)
        self.client.publish(self.topics.error, json.dumps(payloads.error(code, message)), qos=1)
        self.integrations.on_failure(code, message)

    # ------------------------------------------------------------------ worker events (ASR thread)
    def _on_partial(self, job: Job, text: str) -> None:
        start = job.key[0]
        with self._lock:
            if start not in self._partials:
                self._partials = {start: (job.record_id or "", PartialTracker.new())}
            uid, tracker = self._partials[start]
        stable, unstable, rev = tracker.update(text)
        started = iso(datetime.fromtimestamp(self.source.wall_time(start), UTC))
        body = payloads.partial(self.session_id, uid, rev, stable, unstable, started)
        self.client.publish(self.topics.partial, json.dumps(body, ensure_ascii=False), qos=0)

    def _on_final(self, done: FinalDone) -> None:
        if done.transcript.language:
            self._languages.append(done.transcript.language)
        log.debug("final %d: %s", done.seq, done.transcript.text)
        self.publisher.notify()
        t = done.transcript
        likelihood = math.exp(min(0.0, t.avg_logprob))
        self.integrations.on_final(t.text, t.language, done.record.duration_s or 0.0, done.record.id, likelihood)

    # ------------------------------------------------------------------ source events (capture thread)
    def _on_source(self, ok: bool, reason: str | None) -> None:
        self.source_ok = ok
        if ok:
            self._set_state("listening" if self.listening.is_set() else "idle", None)
        else:
            self._set_state("error", reason)
            self.failure("source_failed", reason or "audio source failed")

    # ------------------------------------------------------------------ MQTT (paho's thread -> main thread)
    def _on_connect(self) -> None:
        self._publish_state()
        self.integrations.on_connect()

    # ------------------------------------------------------------------ Controls (for integrations)
    def submit(self, action: Callable[[], None]) -> None:
        """Run `action` on the main thread (from paho's, the ASR or the GPIO thread)."""
        try:
            self.commands.put_nowait(action)
        except queue.Full:
            self.commands_dropped += 1
            log.warning("command queue full: an integration's action was dropped")

    def start_listening(self) -> None:
        self.start_session(None, None)

    def stop_listening(self) -> None:
        self.stop_session()

    def toggle_listening(self) -> None:
        if self.listening.is_set():
            self.stop_session()
        else:
            self.start_session(None, None)

    def new_session(self) -> None:
        self.stop_session()
        self.start_session(None, None)

    def _on_command(self, cmd: Command) -> None:
        if cmd.retained:
            log.info("ignoring retained command %r", cmd.name)
            return
        try:
            self.commands.put_nowait(cmd)
        except queue.Full:  # a flood: refuse at once (counted) rather than queue without bound
            self.commands_dropped += 1
            self.client.reply(cmd, {"ok": False, "error": "busy: too many commands, try again", "request_id": None})

    def _handle_command(self, cmd: Command) -> None:
        request_id: Any = None
        try:
            parsed = parse(cmd)
            request_id = parsed.request_id
            result: dict[str, Any] = {}
            if isinstance(parsed, StartCmd):
                lang = parsed.language
                result["session_id"] = self.start_session(parsed.session_name, lang)
            elif cmd.name == "stop":
                info = self.stop_session()
                result["session_id"] = info.get("id")
            elif isinstance(parsed, HotwordsCmd):
                words = list(self.hotwords)
                if parsed.set is not None:
                    words = [w.strip() for w in parsed.set]
                for w in parsed.add or []:
                    if w.strip() not in words:
                        words.append(w.strip())
                words = [w for w in words if w not in {x.strip() for x in parsed.remove or []}]
                self.hotwords = tuple(words)
                result["hotwords"] = words
            elif isinstance(parsed, ListeningCmd):
                if parsed.on:
                    result["session_id"] = self.start_session(None, None)
                else:
                    result["session_id"] = self.stop_session().get("id")
            elif isinstance(parsed, PronounceCmd):
                try:
                    result |= self.integrations.set_target(parsed.target, parsed.learner, parsed.language)
                except ValueError as exc:
                    raise CommandError(str(exc), request_id) from None
            elif cmd.name == "ping":
                result |= payloads.ping(self.state, time.monotonic() - self.started_mono)
            self.client.reply(cmd, {"ok": True, "error": None, "request_id": request_id, **result})
        except CommandError as exc:
            log.info("rejected command %r: %s", cmd.name, exc)
            self.client.reply(cmd, {"ok": False, "error": str(exc), "request_id": exc.request_id})
