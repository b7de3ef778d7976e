"""Segmenter thread: blocks -> VAD -> utterances, handed to the loop (which persists them before anything is
transcribed). While someone speaks it asks the ASR worker for partial results about once a second of speech,
and as soon as a pause begins for a speculative final, so the final is ready when the pause turns out to be
the end. All timing is by stream offsets: a gap between blocks (idle time, drops) is a jump, never a shift.

The listening <-> idle edge is owned here: `listen(on, at)` takes effect at stream offset `at`, so blocks
captured before a stop are still analysed, and the flush and the reset happen together on this thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from daemon.audio.block import END_OF_STREAM, Block
from daemon.audio.decode import SAMPLE_RATE
from daemon.audio.segmenter import Event, Segmenter, SpeechDiscarded, SpeechStarted
from daemon.audio.vad import FrameSplitter, Vad
from daemon.live.events import Job, ListenerIdle, Post, SourceEnded, SpeechEdge, UtteranceEnded
from daemon.live.plumbing import DropOldestQueue, Heartbeat
from daemon.settings import VadSettings

if TYPE_CHECKING:
    from daemon.speakers.change import TurnWatch

log = logging.getLogger(__name__)

PARTIAL_FIRST_S = 0.2  # of speech before the first partial
PARTIAL_EVERY_S = 1.0
# A pause this long starts a speculative final. Shorter than the end-of-speech silence, longer than most
# pauses between words (each wasted speculation costs a decode).
SPECULATE_AFTER_S = 0.16


class DraftSink(Protocol):
    """Where partial and speculative jobs go (the ASR worker); newest wins there."""

    def add_partial(self, job: Job) -> None: ...

    def add_speculative(self, job: Job) -> None: ...


@dataclass(frozen=True)
class _Listen:
    on: bool
    at: int  # stream offset from which it applies
    token: int


class Listener(threading.Thread):
    def __init__(self, blocks: DropOldestQueue[Block], vad: Vad, settings: VadSettings, post: Post, sink: DraftSink):
        super().__init__(name="segmenter", daemon=True)
        self.blocks = blocks
        self.vad = vad
        self.settings = settings
        self.seg = Segmenter(settings, vad.frame_samples)
        self.post = post
        self.sink = sink
        self.stop_event = threading.Event()
        self.heartbeat = Heartbeat("segmenter", 10.0)
        self.ended = threading.Event()
        self._controls: queue.SimpleQueue[_Listen] = queue.SimpleQueue()
        self._pending: list[_Listen] = []
        self._active = False
        self._frames = FrameSplitter(vad.frame_samples)
        self._expected: int | None = None  # offset of the sample after the last one analysed
        self._next_partial = 0
        self._speculated: tuple[int, int] | None = None
        self._utt_id = ""
        self.watch: TurnWatch | None = None  # set by the loop before start when live speakers are on

    # ------------------------------------------------------------------ control (the loop)
    def listen(self, on: bool, at: int, token: int = 0) -> None:
        """Start or stop analysing from stream offset `at`; stopping answers with ListenerIdle(token)."""
        self._controls.put(_Listen(on, at, token))

    # ------------------------------------------------------------------ thread
    def run(self) -> None:
        # On shutdown, what capture already queued is still analysed, then the utterance in progress is kept.
        while not (self.stop_event.is_set() and len(self.blocks) == 0):
            block = self.blocks.get(timeout=0.2)
            self.heartbeat.beat()
            if block is None:
                self._apply_controls(None)
                continue
            if block is END_OF_STREAM:
                self._apply_controls(None)
                self._close()
                self.ended.set()
                self.post(SourceEnded())
                return
            self._apply_controls(block.offset)
            if self._active:
                self._analyse(block)
        self._apply_controls(None)
        self._close()

    def _apply_controls(self, offset: int | None) -> None:
        """Apply the listen() calls due at `offset` (None: no block is flowing, apply them all)."""
        while True:
            try:
                self._pending.append(self._controls.get_nowait())
            except queue.Empty:
                break
        while self._pending and (offset is None or self._pending[0].at <= offset):
            c = self._pending.pop(0)
            if c.on:
                self._active = True
            else:
                self._close()
                self._active = False
                self.post(ListenerIdle(c.token))

    def _close(self) -> None:
        """Flush the utterance in progress and forget the partial frame: the next block starts afresh."""
        self._handle(self.seg.flush())
        self._frames.reset()
        self._expected = None

    def _analyse(self, block: Block) -> None:
        if block.offset != self._expected:  # a gap (or the first block): jump there, start the VAD afresh
            if self._expected is not None:
                log.debug("gap of %d samples in the stream", block.offset - self._expected)
            self._frames.reset()
            self._handle(self.seg.jump(block.offset))
            self.vad.reset()
        self._expected = block.end
        frames = self._frames.push(block.pcm)
        if not frames.size:
            return
        for frame, prob in zip(frames, self.vad.probs(frames), strict=True):
            self._handle(self.seg.push(frame, float(prob)))
            if self.watch is not None:
                self._handle(self.watch.check(self.seg))  # another voice took over: the utterance is cut there
            if self.seg.in_speech:
                self._schedule()

    def _schedule(self) -> None:
        seg = self.seg
        start = seg.current_start
        length = seg.position - start
        if seg.silence_samples == 0:
            self._speculated = None
            if length >= self._next_partial:
                self.sink.add_partial(Job((start, seg.position), seg.current_audio(), self._utt_id))
                self._next_partial = length + int(PARTIAL_EVERY_S * SAMPLE_RATE)
        elif seg.silence_samples >= int(SPECULATE_AFTER_S * SAMPLE_RATE):
            key = (start, seg.last_voiced)
            if self._speculated != key:
                self._speculated = key
                end = seg.tentative_end()
                self.sink.add_speculative(Job(key, seg.current_audio()[: end - start], self._utt_id))

    def _handle(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, SpeechStarted):
                self._utt_id = str(uuid.uuid4())
                self._next_partial = int((self.settings.pre_roll_ms / 1000 + PARTIAL_FIRST_S) * SAMPLE_RATE)
                self._speculated = None
                self.post(SpeechEdge(True, self._utt_id, ev.start))
            elif isinstance(ev, SpeechDiscarded):
                self.post(SpeechEdge(False, self._utt_id, ev.start, kept=False))
            else:
                self.post(SpeechEdge(False, self._utt_id, ev.utterance.start))
                self.post(UtteranceEnded(self._utt_id, ev.utterance))
