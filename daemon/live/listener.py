"""Segmenter thread: blocks -> VAD -> utterances. Each utterance is persisted (audio file + pending row)
before it is handed to the ASR worker. While someone speaks it asks for partial results about once a second
of speech, and as soon as a pause begins it asks for a speculative final, so the final is ready when the
pause turns out to be the end of the utterance. All timing is by sample counts.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from daemon.audio.decode import SAMPLE_RATE, Audio
from daemon.audio.segmenter import Segmenter, SpeechEnded, SpeechStarted, Utterance
from daemon.audio.vad import FrameSplitter, Vad
from daemon.errors import AsrboxError
from daemon.live.capture import END
from daemon.live.plumbing import DropOldestQueue, Heartbeat
from daemon.settings import VadSettings
from daemon.store.audio import audio_relpath, write_wav_atomic
from daemon.store.db import Store, iso

log = logging.getLogger(__name__)

PARTIAL_FIRST_S = 0.2  # of speech before the first partial
PARTIAL_EVERY_S = 1.0
# A pause this long starts a speculative final. Shorter than the end-of-speech silence, longer than most
# pauses between words (each wasted speculation costs a decode).
SPECULATE_AFTER_S = 0.16


@dataclass(frozen=True)
class Job:
    """Audio for the ASR worker. `key` = (start, end of speech) sample offsets of the utterance in the stream:
    a speculative result is reused for the final when both agree (the final's audio only adds post-roll)."""

    key: tuple[int, int]
    audio: Audio
    record_id: str | None = None  # the utterance id: partials and the final of one utterance share it


class ListenerEvents(Protocol):
    def speech(self, on: bool) -> None: ...

    def partial(self, job: Job) -> None: ...

    def speculative(self, job: Job) -> None: ...

    def utterance(self, job: Job, on_disk: bool = True) -> None: ...

    def failure(self, code: str, message: str) -> None: ...


class Listener(threading.Thread):
    def __init__(
        self,
        blocks: DropOldestQueue[Audio],
        vad: Vad,
        settings: VadSettings,
        store: Store,
        wall_time: Callable[[int], float],
        events: ListenerEvents,
        session: Callable[[], str | None],
        listening: threading.Event,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="segmenter", daemon=True)
        self.blocks = blocks
        self.vad = vad
        self.settings = settings
        self.seg = Segmenter(settings, vad.frame_samples)
        self.store = store
        self.wall_time = wall_time
        self.events = events
        self.session = session
        self.listening = listening
        self.stop_event = stop
        self.heartbeat = Heartbeat("segmenter", 10.0)
        self.ended = threading.Event()
        self._frames = FrameSplitter(vad.frame_samples)
        self._flush = threading.Event()
        self._flushed = threading.Event()
        self._next_partial = 0
        self._speculated: tuple[int, int] | None = None
        self._utt_id = str(uuid.uuid4())
        self._idle = False
        self.archive_audio = True

    # ------------------------------------------------------------------ control (other threads)
    def flush(self, timeout: float = 5.0) -> None:
        """Close the utterance in progress now (stop command, shutdown) and wait until it is persisted."""
        self._flushed.clear()
        self._flush.set()
        if self.is_alive():
            self._flushed.wait(timeout)

    # ------------------------------------------------------------------ thread
    def run(self) -> None:
        # On shutdown, what capture already queued is still analysed, then the utterance in progress is kept.
        while not (self.stop_event.is_set() and len(self.blocks) == 0):
            if self._flush.is_set():
                self._handle(self.seg.flush())
                self._flush.clear()
                self._flushed.set()
            block = self.blocks.get(timeout=0.2)
            self.heartbeat.beat()
            if block is None:
                continue
            if block is END:
                self._handle(self.seg.flush())
                self.ended.set()
                break
            if not self.listening.is_set():
                # idle: audio is neither analysed nor kept (stop flushed the utterance in progress)
                self._frames.reset()
                self._idle = True
                continue
            if self._idle:
                self.vad.reset()
                self._idle = False
            frames = self._frames.push(block)
            if not frames.size:
                continue
            for frame, prob in zip(frames, self.vad.probs(frames), strict=True):
                self._handle(self.seg.push(frame, float(prob)))
                if self.seg.in_speech:
                    self._schedule()
        if not self.ended.is_set():
            self._handle(self.seg.flush())  # stopping: the utterance in progress is persisted, not lost
        self._flushed.set()

    def _schedule(self) -> None:
        seg = self.seg
        start = seg.current_start
        length = seg.position - start
        if seg.silence_samples == 0:
            self._speculated = None
            if length >= self._next_partial:
                self.events.partial(Job((start, seg.position), seg.current_audio(), self._utt_id))
                self._next_partial = length + int(PARTIAL_EVERY_S * SAMPLE_RATE)
        elif seg.silence_samples >= int(SPECULATE_AFTER_S * SAMPLE_RATE):
            key = (start, seg.last_voiced)
            if self._speculated != key:
                self._speculated = key
                end = seg.tentative_end()
                self.events.speculative(Job(key, seg.current_audio()[: end - start], self._utt_id))

    def _handle(self, events: list[SpeechStarted | SpeechEnded]) -> None:
        for ev in events:
            if isinstance(ev, SpeechStarted):
                self._utt_id = str(uuid.uuid4())
                self._next_partial = int((self.settings.pre_roll_ms / 1000 + PARTIAL_FIRST_S) * SAMPLE_RATE)
                self._speculated = None
                self.events.speech(True)
            else:
                self.events.speech(False)
                self._persist(ev.utterance)

    def _persist(self, u: Utterance) -> None:
        rid = self._utt_id
        started = self.wall_time(u.start)
        rel: str | None = None
        size: int | None = None
        if self.archive_audio:
            rel = audio_relpath(rid, datetime.fromtimestamp(started, UTC))
            try:
                size = write_wav_atomic(self.store.root / rel, u.audio)
            except OSError as exc:
                rel = None
                self.events.failure("audio_write_failed", f"cannot store utterance audio: {exc.strerror or exc}")
        try:
            self.store.begin_live(
                record_id=rid,
                session_id=self.session(),
                audio_path=rel,
                started_at=iso(datetime.fromtimestamp(started, UTC)),
                ended_at=iso(datetime.fromtimestamp(self.wall_time(u.end), UTC)),
                duration_s=u.duration_s,
                speech_end_ts=self.wall_time(u.last_voiced),
                audio_bytes=size,
            )
        except AsrboxError as exc:
            self.events.failure("store_failed", str(exc))
            return
        self.events.utterance(Job((u.start, u.last_voiced), u.audio, rid), on_disk=rel is not None)
