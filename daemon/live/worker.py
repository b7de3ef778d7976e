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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from daemon.asr.engine import Engine
from daemon.asr.remote import ServerUnavailable
from daemon.audio.decode import SAMPLE_RATE
from daemon.live.events import DecodeContext, FinalError, FinalText, Job, PartialText, Post
from daemon.live.plumbing import Heartbeat, LatestSlot
from daemon.store.audio import read_wav
from daemon.text.pipeline import TextPipeline
from daemon.transcript import Audio, DecodeOptions, EngineInfo, Transcript

log = logging.getLogger(__name__)

SPECULATIVE_CACHE = 4
EXPECT_FINAL_S = 0.5
EMBED_TIMEOUT_S = 10.0  # a final waits this long for its speaker embedding at most, then goes out without a label
HOLD_MAX_S = 20.0  # background work waits for a live utterance's final at most this long (continuous speech)


class EngineUnavailable(RuntimeError):
    """The ASR worker has stopped (the daemon is shutting down): the call was not made."""


@dataclass(frozen=True)
class EngineCall:
    """A batch for the engine from outside the live path (an API request, a job, Wyoming)."""

    audios: Sequence[Audio]
    options: DecodeOptions
    future: Future[list[Transcript]]


class AsrWorker(threading.Thread):
    def __init__(self, engine: Engine, text: TextPipeline, context: DecodeContext, post: Post) -> None:
        super().__init__(name="asr", daemon=True)
        self.engine = engine
        self.text = text
        self.post = post
        self.stop_event = threading.Event()
        self.heartbeat = Heartbeat("asr", 120.0)
        if hasattr(engine, "alive"):  # a remote engine waiting on a busy server is making progress
            setattr(engine, "alive", self.heartbeat.beat)  # noqa: B010
        self._context = context
        self._finals: deque[Job] = deque()
        self._partial: LatestSlot[Job] = LatestSlot()
        self._speculative: LatestSlot[Job] = LatestSlot()
        self._cache: OrderedDict[tuple[int, int], _Speculated] = OrderedDict()
        self._interactive: deque[EngineCall] = deque()  # a client waits for the answer (API request, Wyoming)
        self._background: deque[EngineCall] = deque()  # jobs: after everything live, one window at a time
        self._closed = False
        self._hold_until = 0.0  # monotonic: background calls wait until then (a live utterance is in progress)
        self._partial_turn = True  # background work and partials take turns, so neither starves
        self._cond = threading.Condition()
        self._expect_final = False
        self.last_rtf = 0.0
        self.failures = 0
        self.embed_speaker: Callable[[Audio], Any] | None = None  # set by the loop when live speakers are on
        self._speaker_pool: ThreadPoolExecutor | None = None  # embeddings run beside the decoding, not after it
        self._stuck: Future[Any] | None = None  # an embedding that ran past EMBED_TIMEOUT_S, still running

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
        if not getattr(self.engine, "partials", True):
            return  # a remote engine set to send finals only
        with self._cond:
            self._partial.put(job)
            self._cond.notify()

    def add_speculative(self, job: Job) -> None:
        with self._cond:
            self._speculative.put(job)
            self._cond.notify()

    def call(self, audios: Sequence[Audio], options: DecodeOptions, interactive: bool) -> Future[list[Transcript]]:
        """Thread-safe: run the engine on `audios` on this thread, after live finals. Interactive calls come
        before partials and jobs; a job's windows take turns with partials. The future fails with
        EngineUnavailable once the worker has stopped."""
        future: Future[list[Transcript]] = Future()
        with self._cond:
            if self._closed or self.stop_event.is_set() or not self.is_alive():
                future.set_exception(EngineUnavailable("the recognizer is not running (shutting down)"))
                return future
            (self._interactive if interactive else self._background).append(EngineCall(audios, options, future))
            self._cond.notify()
        return future

    def hold_background(self, hold: bool) -> None:
        """The loop: a live utterance is being spoken or waits for its final (hold), or none is (release). While
        held, job windows wait, so the final never queues behind one; a hold ends by itself after HOLD_MAX_S."""
        with self._cond:
            if not hold:
                self._hold_until = 0.0
                self._cond.notify()
            elif self._hold_until == 0.0:
                self._hold_until = time.monotonic() + HOLD_MAX_S

    def _background_ready(self) -> bool:
        return bool(self._background) and time.monotonic() >= self._hold_until

    @property
    def calls_waiting(self) -> int:
        return len(self._interactive) + len(self._background)

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
        try:
            while self._next():
                pass
        finally:
            self._refuse_calls()
            if self._speaker_pool is not None:
                self._speaker_pool.shutdown(wait=False, cancel_futures=True)

    def _next(self) -> bool:
        """Wait for work and do one piece of it; False once stopped."""
        with self._cond:
            if not self._finals and self._expect_final and not self.stop_event.is_set():
                self._cond.wait(EXPECT_FINAL_S)  # the loop hands the next waiting final over at once
                self._expect_final = False
            if not self._has_work() and not self.stop_event.is_set():
                self._cond.wait(1.0)
            self.heartbeat.beat()  # waiting for work is progress too
            if self.stop_event.is_set():
                return False
            work = self._pick()
        if work is None:
            return True
        try:
            if isinstance(work, EngineCall):
                self._call(work)
            elif work[0] == "final":
                self._final(work[1])
            elif work[0] == "spec":
                self._speculate(work[1])
            else:
                self._partial_text(work[1])
        except ServerUnavailable as exc:  # no fault of the audio: a final waits in the store for the server
            log.debug("ASR server unavailable: %s", exc)
            if not isinstance(work, EngineCall) and work[0] == "final":
                self.post(FinalError(work[1], _one_line(exc), unavailable=True))
        except Exception as exc:  # one bad utterance must not kill the worker
            self.failures += 1
            log.warning("ASR worker: job failed: %s", _one_line(exc))
            log.debug("ASR worker failure", exc_info=True)
            if not isinstance(work, EngineCall) and work[0] == "final":
                self.post(FinalError(work[1], _one_line(exc)))
        finally:
            self.heartbeat.beat()
        return True

    def _has_work(self) -> bool:
        ready = self._background_ready()
        return bool(self._finals or self._speculative or self._partial or self._interactive or ready)

    def _pick(self) -> EngineCall | tuple[str, Job] | None:
        """Live finals first, then the speculative final, then interactive calls; partials and background calls
        take turns. Called under the condition."""
        if self._finals:
            return ("final", self._finals.popleft())
        if (spec := self._speculative.take()) is not None:
            return ("spec", spec)
        if self._interactive:
            return self._interactive.popleft()
        background = self._background_ready()
        partial = self._partial.take() if self._partial_turn or not background else None
        if partial is not None:
            self._partial_turn = False
            return ("partial", partial)
        if background:
            self._partial_turn = True
            return self._background.popleft()
        return None

    def _call(self, call: EngineCall) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(self.engine.transcribe(call.audios, call.options))
        except BaseException as exc:  # the caller decides what a failure means
            call.future.set_exception(exc)

    def _refuse_calls(self) -> None:
        with self._cond:
            self._closed = True
            calls = [*self._interactive, *self._background]
            self._interactive.clear()
            self._background.clear()
        for c in calls:
            if c.future.set_running_or_notify_cancel():
                c.future.set_exception(EngineUnavailable("the recognizer stopped (shutting down)"))

    def _transcribe(self, job: Job, options: DecodeOptions) -> Transcript:
        t0 = time.perf_counter()
        result = self.engine.transcribe([job.audio], options)[0]
        if job.audio.size:
            self.last_rtf = round((time.perf_counter() - t0) / (job.audio.size / SAMPLE_RATE), 3)
        return result

    def _speculate(self, job: Job) -> None:
        ctx = self._context
        t0 = time.perf_counter()
        self._forget_speculations(job.key[0])  # the utterance went on: what was guessed before cannot be its final
        embedding = self._start_embedding(job.audio)
        result = self._transcribe(job, ctx.options)
        self._cache[job.key] = _Speculated(result, time.perf_counter() - t0, ctx, embedding)
        while len(self._cache) > SPECULATIVE_CACHE:
            _cancel(self._cache.popitem(last=False)[1].embedding)

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
        self._forget_speculations(job.key[0])
        if cached is not None and _same_decoding(cached.context, ctx):
            transcript, spent, embedding = cached.transcript, cached.spent, cached.embedding
        else:
            embedding = cached.embedding if cached is not None else self._start_embedding(job.audio)
            transcript, spent = self._transcribe(job, ctx.options), 0.0
        processed = self.text.apply(transcript, ctx.terms)
        vector = self._embedding(embedding)
        self.post(FinalText(job, processed, transcript.text, time.perf_counter() - t0 + spent, vector))

    def _embedding(self, pending: Future[Any] | None) -> Any:
        """The final's speaker embedding (None when off, too short, failed or stuck: the text goes out regardless).
        One that runs past EMBED_TIMEOUT_S keeps its thread: later finals go without labels (no wait) until it
        ends, instead of each waiting behind it."""
        if pending is None:
            return None
        try:
            return pending.result(timeout=EMBED_TIMEOUT_S)
        except TimeoutError:
            log.warning("a speaker embedding took over %.0f s: finals go without labels until it ends", EMBED_TIMEOUT_S)
            self._stuck = pending
        except Exception as exc:
            log.warning("speaker embedding failed: %s", _one_line(exc))
        return None

    def _forget_speculations(self, start: int) -> None:
        """Drop the speculative results of the utterance that starts at `start`, their embeddings cancelled."""
        for key in [k for k in self._cache if k[0] == start]:
            _cancel(self._cache.pop(key).embedding)

    def _start_embedding(self, audio: Audio) -> Future[Any] | None:
        """The speaker embedding of `audio`, computed on its own thread while this one decodes (None when off,
        or while an embedding that ran past EMBED_TIMEOUT_S still holds that thread)."""
        if self.embed_speaker is None:
            return None
        if self._stuck is not None:
            if not self._stuck.done():
                return None
            self._stuck = None
            log.info("speaker embeddings run again")
        if self._speaker_pool is None:
            self._speaker_pool = ThreadPoolExecutor(1, thread_name_prefix="speaker")
        return self._speaker_pool.submit(self.embed_speaker, audio)


@dataclass(frozen=True)
class _Speculated:
    """A speculative final's result, kept until the final comes (or newer ones push it out)."""

    transcript: Transcript
    spent: float  # seconds the decoding took
    context: DecodeContext
    embedding: Future[Any] | None  # the speaker embedding started with it


def _cancel(pending: Future[Any] | None) -> None:
    if pending is not None:
        pending.cancel()  # not started yet: never runs; running: its result is not waited for


def _same_decoding(a: DecodeContext, b: DecodeContext) -> bool:
    """Whether a speculative result may stand for the final: the same language, terms and beam. The recent-language
    hint may differ (the previous final arrived in between): it is only a prior for detection."""
    return a.terms == b.terms and replace(a.options, language_hint=None) == replace(b.options, language_hint=None)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class CallCancelled(RuntimeError):
    """The caller no longer wants the result (its client went away): no more windows for it."""


class SharedEngine:
    """The live worker's engine, for callers on other threads (API requests, jobs, Wyoming): each call is queued
    on the worker, so one model serves everything and live speech comes first. Once `stop` is set, the next
    call raises CallCancelled instead of queuing more work for nobody."""

    def __init__(self, worker: AsrWorker, interactive: bool, stop: threading.Event | None = None) -> None:
        self.worker = worker
        self.interactive = interactive
        self.stop = stop
        self.info: EngineInfo = worker.engine.info

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        if not audios:
            return []
        if self.stop is not None and self.stop.is_set():
            raise CallCancelled("cancelled: the client went away")
        return self.worker.call(list(audios), options, self.interactive).result()

    def close(self) -> None:
        """The engine belongs to the daemon, which closes it."""
