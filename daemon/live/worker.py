"""ASR worker thread: finals first (persisted utterances, oldest first), then the speculative final of the
utterance that may just have ended, then the newest partial. Partials may be dropped (counted); finals never:
they live in the store as pending rows until done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.asr.engine import DecodeOptions, Engine, Transcript
from daemon.audio.decode import SAMPLE_RATE
from daemon.errors import AsrboxError
from daemon.live.listener import Job
from daemon.live.plumbing import Heartbeat, LatestSlot
from daemon.store.audio import read_wav
from daemon.store.db import Record, Store
from daemon.text.pipeline import TextPipeline

log = logging.getLogger(__name__)

SPECULATIVE_CACHE = 4
MAX_IN_MEMORY = 16  # waiting finals whose audio stays in memory
_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class FinalDone:
    record: Record
    seq: int
    transcript: Transcript
    processing_s: float


class AsrWorker(threading.Thread):
    def __init__(
        self,
        engine: Engine,
        text: TextPipeline,
        store: Store,
        options: Callable[[], DecodeOptions],
        hotwords: Callable[[], tuple[str, ...]],
        payload: Callable[[Record, Transcript, str, float, int], dict[str, object]],
        on_final: Callable[[FinalDone], None],
        on_partial: Callable[[Job, str], None],
        stop: threading.Event,
    ) -> None:
        super().__init__(name="asr", daemon=True)
        self.engine = engine
        self.text = text
        self.store = store
        self.options = options
        self.hotwords = hotwords
        self.payload = payload
        self.on_final = on_final
        self.on_partial = on_partial
        self.stop_event = stop
        self.heartbeat = Heartbeat("asr", 120.0)
        self._finals: deque[Job] = deque()
        self._partial: LatestSlot[Job] = LatestSlot()
        self._speculative: LatestSlot[Job] = LatestSlot()
        self._cache: OrderedDict[tuple[int, int], tuple[Transcript, float]] = OrderedDict()
        self._cond = threading.Condition()
        self.busy = False
        self.finals_done = 0
        self.last_rtf = 0.0
        self.failures = 0
        self._drain_deadline: float | None = None

    # ------------------------------------------------------------------ producers
    def add_final(self, job: Job, on_disk: bool = True) -> None:
        """A persisted utterance. Past MAX_IN_MEMORY waiting finals, only its id is kept: the audio is read
        back from its WAV file when its turn comes, so a long backlog costs no memory."""
        with self._cond:
            if on_disk and len(self._finals) >= MAX_IN_MEMORY:
                job = Job(job.key, _EMPTY, job.record_id)
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

    def recover(self, records: list[Record]) -> None:
        """Pending utterances left by a crash: transcribe them first, from their audio files."""
        with self._cond:
            for r in records:
                self._finals.append(Job((-1, -1), _EMPTY, r.id))
            self._cond.notify()

    @property
    def backlog(self) -> int:
        return len(self._finals) + (1 if self.busy else 0)

    @property
    def partials_dropped(self) -> int:
        return self._partial.dropped

    def drain(self, deadline_s: float) -> None:
        """Shutdown: finish the finals in hand until the deadline, then stop (the rest stays pending)."""
        self._drain_deadline = time.monotonic() + deadline_s
        with self._cond:
            self._cond.notify()

    # ------------------------------------------------------------------ thread
    def run(self) -> None:
        while True:
            with self._cond:
                if not (self._finals or self._speculative or self._partial) and not self._stopping():
                    self._cond.wait(1.0)
                self.heartbeat.beat()  # waiting for work is progress too
                if self._stopping() and (
                    not self._finals or (self._drain_deadline is not None and time.monotonic() > self._drain_deadline)
                ):
                    break
                final = self._finals.popleft() if self._finals else None
                spec = None if final or self._stopping() else self._speculative.take()
                partial = None if final or spec or self._stopping() else self._partial.take()
                self.busy = bool(final or spec or partial)
            try:
                if final is not None:
                    self._final(final)
                elif spec is not None:
                    t0 = time.perf_counter()
                    result = self._transcribe(spec, self.options())
                    self._cache[spec.key] = (result, time.perf_counter() - t0)
                    while len(self._cache) > SPECULATIVE_CACHE:
                        self._cache.popitem(last=False)
                elif partial is not None:
                    opts = self.options()
                    draft = DecodeOptions(opts.language, opts.hotwords, beam_size=1, fallback=False, draft=True)
                    t = self._transcribe(partial, draft)
                    self.on_partial(partial, self.text.apply(t, self.hotwords()).text)
            except Exception:  # one bad utterance must not kill the worker
                self.failures += 1
                log.exception("ASR worker: job failed")
            finally:
                self.busy = False
                self.heartbeat.beat()

    def _stopping(self) -> bool:
        return self.stop_event.is_set() and self._drain_deadline is not None

    def _transcribe(self, job: Job, options: DecodeOptions) -> Transcript:
        t0 = time.perf_counter()
        result = self.engine.transcribe([job.audio], options)[0]
        dt = time.perf_counter() - t0
        if job.audio.size:
            self.last_rtf = round(dt / (job.audio.size / SAMPLE_RATE), 3)
        return result

    def _final(self, job: Job) -> None:
        assert job.record_id is not None
        rec = self.store.get(job.record_id)
        if rec is None or rec.status != "pending":
            return
        audio = job.audio
        if audio.size == 0:
            if not rec.audio_path:
                self.store.fail(rec.id, "audio was not stored and is lost with the restart")
                return
            try:
                audio = read_wav(self.store.root / Path(rec.audio_path))
            except (OSError, ValueError, EOFError) as exc:
                self.store.fail(rec.id, f"cannot read stored audio: {exc}")
                return
            job = Job(job.key, audio, job.record_id)
        t0 = time.perf_counter()
        cached = self._cache.pop(job.key, None)
        if cached is not None:
            transcript, spent = cached
        else:
            transcript, spent = self._transcribe(job, self.options()), 0.0
        processed = self.text.apply(transcript, self.hotwords())
        processing_s = time.perf_counter() - t0 + spent
        try:
            seq = self.store.finish(
                rec.id,
                language=processed.language,
                raw_text=transcript.text,
                text=processed.text,
                segments=[{"start": s.start, "end": s.end, "text": s.text} for s in processed.segments],
                engine={**self.engine.info.as_dict(), "processing_s": round(processing_s, 3)},
                processing_s=processing_s,
                payload=lambda seq: self.payload(rec, processed, transcript.text, processing_s, seq),
                meta={k: v for k, v in processed.meta.items() if k == "hotwords"},
            )
        except AsrboxError as exc:
            log.error("cannot store the transcript of %s: %s", rec.id, exc)
            return
        self.finals_done += 1
        self.on_final(FinalDone(rec, seq or 0, processed, processing_s))
