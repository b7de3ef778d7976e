"""ASR worker thread: the final in hand first (the loop hands persisted utterances over one at a time, oldest
first), then the speculative final of the utterance that may just have ended, then the newest partial.
Partials may be dropped (counted); finals never: they are rows in the store until the loop records their
result.

The worker only computes: engine + text pipeline. Every result, and every failure, goes to the loop as a
value (`FinalText`, `FinalError`, `PartialText`); the loop stores, publishes and decides about retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import replace

from daemon.asr.engine import Engine
from daemon.audio.decode import SAMPLE_RATE
from daemon.live.events import DecodeContext, FinalError, FinalText, Job, PartialText, Post
from daemon.live.plumbing import Heartbeat, LatestSlot
from daemon.store.audio import read_wav
from daemon.text.pipeline import TextPipeline
from daemon.transcript import DecodeOptions, Transcript

log = logging.getLogger(__name__)

SPECULATIVE_CACHE = 4
EXPECT_FINAL_S = 0.5


class AsrWorker(threading.Thread):
    def __init__(self, engine: Engine, text: TextPipeline, context: DecodeContext, post: Post) -> None:
        super().__init__(name="asr", daemon=True)
        self.engine = engine
        self.text = text
        self.post = post
        self.stop_event = threading.Event()
        self.heartbeat = Heartbeat("asr", 120.0)
        self._context = context
        self._finals: deque[Job] = deque()
        self._partial: LatestSlot[Job] = LatestSlot()
        self._speculative: LatestSlot[Job] = LatestSlot()
        self._cache: OrderedDict[tuple[int, int], tuple[Transcript, float, DecodeContext]] = OrderedDict()
        self._cond = threading.Condition()
        self._expect_final = False
        self.last_rtf = 0.0
        self.failures = 0

    # ------------------------------------------------------------------ producers (loop, listener)
    def set_context(self, context: DecodeContext) -> None:
        """The loop's current decode options and terms, for partials and speculative finals."""
        self._context = context

    def add_final(self, job: Job, more_waiting: bool = False) -> None:
        """A final to transcribe now (the loop hands them over one at a time). `more_waiting`: the loop has
        more, so after this one the worker waits briefly for the next instead of starting a draft."""
        with self._cond:
            self._expect_final = more_waiting
            self._finals.append(job)
            self._partial.clear()  # the utterance it belonged to has ended
            self._cond.notify()

    def add_partial(self, job: Job) -> None:
        with self._cond:
            self._partial.put(job)
            self._cond.notify()

    def add_speculative(self, job: Job) -> None:
        with self._cond:
            self._speculative.put(job)
            self._cond.notify()

    @property
    def partials_dropped(self) -> int:
        return self._partial.dropped

    def stop(self) -> None:
        """Finish the job in hand, then end (finals not started stay pending in the store)."""
        self.stop_event.set()
        with self._cond:
            self._cond.notify()

    # ------------------------------------------------------------------ thread
    def run(self) -> None:
        while True:
            with self._cond:
                if not self._finals and self._expect_final and not self.stop_event.is_set():
                    self._cond.wait(EXPECT_FINAL_S)  # the loop hands the next waiting final over at once
                    self._expect_final = False
                if not (self._finals or self._speculative or self._partial) and not self.stop_event.is_set():
                    self._cond.wait(1.0)
                self.heartbeat.beat()  # waiting for work is progress too
                if self.stop_event.is_set():
                    return
                final = self._finals.popleft() if self._finals else None
                spec = None if final else self._speculative.take()
                partial = None if final or spec else self._partial.take()
            try:
                if final is not None:
                    self._final(final)
                elif spec is not None:
                    self._speculate(spec)
                elif partial is not None:
                    self._partial_text(partial)
            except Exception as exc:  # one bad utterance must not kill the worker
                self.failures += 1
                log.warning("ASR worker: job failed: %s", _one_line(exc))
                log.debug("ASR worker failure", exc_info=True)
                if final is not None:
                    self.post(FinalError(final, _one_line(exc)))
            finally:
                self.heartbeat.beat()

    def _transcribe(self, job: Job, options: DecodeOptions) -> Transcript:
        t0 = time.perf_counter()
        result = self.engine.transcribe([job.audio], options)[0]
        if job.audio.size:
            self.last_rtf = round((time.perf_counter() - t0) / (job.audio.size / SAMPLE_RATE), 3)
        return result

    def _speculate(self, job: Job) -> None:
        ctx = self._context
        t0 = time.perf_counter()
        result = self._transcribe(job, ctx.options)
        self._cache[job.key] = (result, time.perf_counter() - t0, ctx)
        while len(self._cache) > SPECULATIVE_CACHE:
            self._cache.popitem(last=False)

    def _partial_text(self, job: Job) -> None:
        """A draft: greedy, short window; the text pipeline without hotword correction (the final has it)."""
        o = self._context.options
        draft = DecodeOptions(o.language, o.hotwords, beam_size=1, fallback=False, draft=True)
        t = self._transcribe(job, draft)
        self.post(PartialText(job.utterance_id, job.key[0], self.text.apply(t, ()).text))

    def _final(self, job: Job) -> None:
        if job.audio.size == 0:
            if job.audio_path is None:
                self.post(FinalError(job, "the audio was not stored and is lost with the restart", permanent=True))
                return
            try:
                job = Job(job.key, read_wav(job.audio_path), job.utterance_id, job.context, job.audio_path)
            except (OSError, ValueError, EOFError) as exc:
                self.post(FinalError(job, f"cannot read the stored audio: {exc}", permanent=True))
                return
        ctx = job.context or self._context
        t0 = time.perf_counter()
        cached = self._cache.pop(job.key, None)
        if cached is not None and _same_decoding(cached[2], ctx):
            transcript, spent = cached[0], cached[1]
        else:
            transcript, spent = self._transcribe(job, ctx.options), 0.0
        processed = self.text.apply(transcript, ctx.terms)
        self.post(FinalText(job, processed, transcript.text, time.perf_counter() - t0 + spent))


def _same_decoding(a: DecodeContext, b: DecodeContext) -> bool:
    """Whether a speculative result may stand for the final: the same language, terms and beam. The recent-language
    hint may differ (the previous final arrived in between): it is only a prior for detection."""
    return a.terms == b.terms and replace(a.options, language_hint=None) == replace(b.options, language_hint=None)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
