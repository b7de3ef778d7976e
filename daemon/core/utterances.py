"""Utterances on the loop: persisted before anything is transcribed, handed to the ASR worker one at a time,
their result stored with its outbox row, their failures counted and, after `asr.max_attempts`, recorded.

The queue of waiting finals lives here, on the loop; the worker holds at most the one in hand. Its attempt is
counted in the store as it is handed over, never while it waits, so an utterance that crashes the whole
process is given up after `max_attempts` starts, and the ones queued behind it lose nothing. A failed attempt
goes back to the front of the queue.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from daemon.errors import AsrboxError
from daemon.live.events import FinalError, FinalText, Job, UtteranceEnded
from daemon.mqtt import payloads
from daemon.speakers.live import LiveSpeakers, live_models, turn_watch
from daemon.speakers.live import embedder as speaker_embedder
from daemon.store.attempts import refund_attempt
from daemon.store.audio import audio_relpath, write_wav_atomic
from daemon.store.db import Record, iso
from daemon.store.speakers import set_utterance_speaker

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)

MAX_IN_MEMORY = 16  # waiting finals whose audio stays in memory; the rest is read back from their WAV files
MAX_WAITING_UNSTORED = 200  # waiting finals with no audio file (disk low): beyond this they are given up
SERVER_RETRY_S = (1.0, 2.0, 4.0, 8.0, 15.0)  # remote engine: waits before the next try while the server is down
_EMPTY = np.zeros(0, dtype=np.float32)


class Utterances:
    def __init__(self, app: App) -> None:
        self.app = app
        self.archive_audio = True
        self._waiting: deque[Job] = deque()
        self._current: Job | None = None  # handed to the worker, no result yet
        self.done = 0
        self.failed = 0
        self._last_error: dict[str, str] = {}
        self._closed = False
        self._hold_until = 0.0  # remote engine: nothing is handed over before this (monotonic)
        self._unavailable = 0  # consecutive tries that found the ASR server unavailable
        self.speakers = LiveSpeakers(app.store, app.settings)
        models = live_models(app.settings)
        if models is not None:
            cam = speaker_embedder(app.settings, models)
            app.worker.embed_speaker = cam.embed
            app.listener.watch = turn_watch(app.settings, models, cam)

    def close(self) -> None:
        """Shutdown is past the worker's deadline: results that still come back are not stored (the outbox has
        drained, MQTT is going away); their utterances stay pending and are transcribed on the next start."""
        self._closed = True

    def _late(self, utterance_id: str) -> bool:
        if self._closed:
            log.info(
                "result for %s came after the shutdown deadline; it stays pending for the next start", utterance_id
            )
        return self._closed

    # ------------------------------------------------------------------ in
    def ended(self, ev: UtteranceEnded) -> None:
        """Persist (audio file + pending row), then hand it to the worker."""
        app, u, rid = self.app, ev.utterance, ev.utterance_id
        started = datetime.fromtimestamp(app.source.wall_time(u.start), UTC)
        rel: str | None = None
        size: int | None = None
        if self.archive_audio:
            rel = audio_relpath(rid, started)
            try:
                size = write_wav_atomic(app.audio_path(rel), u.audio)
            except OSError as exc:
                rel = None
                app.failure("audio_write_failed", f"cannot store utterance audio: {exc.strerror or exc}")
        try:
            app.store.begin_live(
                record_id=rid,
                session_id=app.session_id,
                audio_path=rel,
                started_at=iso(started),
                ended_at=iso(datetime.fromtimestamp(app.source.wall_time(u.end), UTC)),
                duration_s=u.duration_s,
                speech_end_ts=app.source.wall_time(u.last_voiced),
                audio_bytes=size,
            )
        except AsrboxError as exc:
            app.failure("store_failed", str(exc))
            return
        job = Job((u.start, u.last_voiced), u.audio, rid, app.context(), app.audio_path(rel) if rel else None)
        self._enqueue(job)

    def recover(self) -> None:
        """Utterances stored but not transcribed before the last stop: first in line, from their audio files."""
        app = self.app
        try:
            pending = app.store.pending_live()
        except AsrboxError as exc:
            app.failure("store_failed", str(exc))
            return
        if pending:
            log.info("recovering %d utterance(s) stored but not transcribed before the last stop", len(pending))
        for r in pending:
            path = app.audio_path(r.audio_path) if r.audio_path else None
            self._enqueue(Job((-1, -1), _EMPTY, r.id, app.context(), path))

    @property
    def backlog(self) -> int:
        return len(self._waiting) + (self._current is not None)

    def _enqueue(self, job: Job, front: bool = False) -> None:
        if len(self._waiting) >= MAX_IN_MEMORY and job.audio_path is not None and job.audio.size:
            job = Job(job.key, _EMPTY, job.utterance_id, job.context, job.audio_path)  # read back when its turn comes
        elif job.audio_path is None and len(self._waiting) >= MAX_WAITING_UNSTORED:
            self._give_up(job.utterance_id, "too many utterances waiting and no audio file to wait in (disk low)")
            return
        if front:
            self._waiting.appendleft(job)
        else:
            self._waiting.append(job)
        self.feed()

    def feed(self) -> None:
        """Hand the next waiting final to the worker if it has none, counting the attempt first."""
        app, limit = self.app, self.app.settings.asr.max_attempts
        if self._hold_until and time.monotonic() < self._hold_until:
            return  # the ASR server was unavailable: the supervisor's tick tries again after the wait
        while self._current is None and self._waiting and not self._closed:
            job = self._waiting[0]
            try:
                attempt = app.store.claim_attempt(job.utterance_id, limit)
            except AsrboxError as exc:  # tried again on the next tick
                app.failure("store_failed", str(exc))
                return
            self._waiting.popleft()
            if attempt == 0:
                continue  # deleted meanwhile
            if attempt is None:
                why = self._last_error.pop(job.utterance_id, "the process stopped during each attempt")
                self._give_up(job.utterance_id, f"gave up after {limit} attempt(s): {why}")
                continue
            self._current = job
            app.worker.add_final(job, more_waiting=bool(self._waiting))

    # ------------------------------------------------------------------ results
    def transcribed(self, ev: FinalText) -> None:
        self._current = None
        if self._late(ev.job.utterance_id):
            return
        self._last_error.pop(ev.job.utterance_id, None)
        if self._unavailable:
            self._server_back()
        self.app.final_decided(ev.job.utterance_id)
        try:
            self._record(ev)  # stored and handed to the outbox first: its latency counts
        finally:
            self.feed()

    def _record(self, ev: FinalText) -> None:
        app, rid = self.app, ev.job.utterance_id
        try:
            rec = app.store.get(rid)
            if rec is None or rec.status != "pending":
                return  # deleted or decided meanwhile
            seq, speaker = self._store(rec, ev)
        except AsrboxError as exc:  # stays pending: tried again on the next start (attempts counted)
            app.failure("store_failed", f"cannot store the transcript of {rid}: {exc}")
            return
        except Exception as exc:  # a result that cannot be stored as it is (a payload bug): a failed attempt
            self._last_error[rid] = f"{type(exc).__name__}: {exc}"
            self._waiting.appendleft(ev.job)
            return
        self.done += 1
        t = ev.transcript
        log.debug("final %d: %s", seq, t.text)
        app.note_language(t.language)
        app.outbox.pump()
        likelihood = math.exp(min(0.0, t.avg_logprob))
        app.integrations.on_final(t.text, t.language, rec.duration_s or 0.0, rec.id, likelihood)
        app.bus.emit(
            "final",
            {
                "seq": seq,
                "record_id": rec.id,
                "session_id": rec.session_id,
                "text": t.text,
                "language": t.language,
                "started_at": rec.started_at,
                "ended_at": rec.ended_at,
                "duration_s": rec.duration_s,
                "speaker": speaker[0] if speaker else None,
                "speaker_name": speaker[1] if speaker else None,
            },
        )

    def _speaker(self, rec: Record, ev: FinalText) -> tuple[str, str | None] | None:
        """The final's speaker label (and name) from the session's online clustering; stored with the row."""
        if ev.speaker_embedding is None:
            return None
        speaker = self.speakers.assign(rec.session_id, ev.speaker_embedding)
        set_utterance_speaker(self.app.store, rec.id, speaker[0], ev.speaker_embedding)
        return speaker

    def _store(self, rec: Record, ev: FinalText) -> tuple[int, tuple[str, str | None] | None]:
        app, t = self.app, ev.transcript
        info = app.engine.info
        speaker = self._speaker(rec, ev)
        seq = app.store.finish(
            rec.id,
            language=t.language,
            raw_text=ev.raw_text,
            text=t.text,
            segments=[{"start": s.start, "end": s.end, "text": s.text} for s in t.segments],
            engine={**info.as_dict(), "processing_s": round(ev.processing_s, 3)},
            processing_s=ev.processing_s,
            payload=lambda seq: payloads.final(
                rec, t, ev.raw_text, info, ev.processing_s, seq, app.settings.mqtt.device_id, speaker
            ),
            meta={k: v for k, v in t.meta.items() if k == "hotwords"},
        )
        return int(seq or 0), speaker

    def failed_once(self, ev: FinalError) -> None:
        """A failed attempt: try again (counted) until the limit, then record the failure."""
        self._current = None
        rid = ev.job.utterance_id
        if self._late(rid):
            return
        if ev.permanent:
            self._give_up(rid, ev.reason)
            self.feed()
            return
        if ev.unavailable:
            self._server_unavailable(ev)
            return
        self._last_error[rid] = ev.reason
        self._enqueue(ev.job, front=True)

    def _server_unavailable(self, ev: FinalError) -> None:
        """The ASR server could not be asked: the attempt is given back, the utterance stays first in line, and
        nothing is handed over until a growing wait has passed (then it is tried again, in order)."""
        rid = ev.job.utterance_id
        try:
            refund_attempt(self.app.store, rid)
        except AsrboxError as exc:
            self.app.failure("store_failed", str(exc))
        wait = SERVER_RETRY_S[min(self._unavailable, len(SERVER_RETRY_S) - 1)]
        self._unavailable += 1
        self._hold_until = time.monotonic() + wait
        if self._unavailable == 1:
            reason = f"asr server unavailable: {ev.reason}"
            self.app.failure("asr_server_unavailable", f"{reason}; utterances wait in the store")
            self.app.set_state(self.app.state, reason)
        self._enqueue(ev.job, front=True)

    def _server_back(self) -> None:
        app = self.app
        log.info("ASR server answers again; %d utterance(s) waiting drain in order", len(self._waiting))
        self._hold_until, self._unavailable = 0.0, 0
        if (app.reason or "").startswith("asr server unavailable"):
            app.set_state(app.state, None)

    def _give_up(self, record_id: str, reason: str) -> None:
        app = self.app
        app.final_decided(record_id)
        self.failed += 1
        try:
            app.store.fail(record_id, reason)
        except AsrboxError as exc:
            log.error("cannot mark %s failed: %s", record_id, exc)
        app.failure("transcription_failed", f"utterance {record_id}: {reason}", {"utterance_id": record_id})
