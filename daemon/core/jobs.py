"""Durable transcription jobs: queued in SQLite, run one file at a time on a job thread through the shared
engine (background priority: live finals and API requests go first), resumed after a restart.

The loop owns everything: it takes the next file from the store (oldest job first), hands it to the job thread,
and when the thread posts the outcome back it records the file and its job row in one transaction
(`JobStore.complete_file`), emits a bus event `job` and hands over the next file. The thread only transcribes.
Cancelling or stopping sets the file's stop flag: the engine wrapper refuses the next window, so the file ends
after its current one. At shutdown the file in hand is abandoned and stays queued (no failed record); after a
crash it is 'running' in the store and goes back to the queue at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.asr.engine import Engine
from daemon.audio.decode import SAMPLE_RATE
from daemon.batch.transcribe import Outcome, describe
from daemon.core.files import FileOptions
from daemon.store.jobs import JobStore, Work
from daemon.transcript import Audio, DecodeOptions, Transcript

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)

UPLOADS = "uploads"
PROGRESS_EVERY_S = 1.0  # progress is written and announced at most this often per file
JOIN_S = 15.0  # the window in hand at shutdown may take this long to come back


class Interrupted(Exception):
    """The file was cancelled, or the daemon is stopping: no more windows for it."""


@dataclass
class _Task:
    work: Work
    stop: threading.Event = field(default_factory=threading.Event)


class _Watched:
    """The shared engine as a job sees it: refuses the next window once the file's stop flag is set, and reports
    how much audio has been transcribed."""

    def __init__(self, inner: Engine, stop: threading.Event, on_audio: Callable[[int], None]) -> None:
        self.inner = inner
        self.info = inner.info
        self.stop = stop
        self.on_audio = on_audio

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        if self.stop.is_set():
            raise Interrupted("stopped before this window")
        out = self.inner.transcribe(audios, options)
        self.on_audio(sum(int(a.size) for a in audios))
        return out

    def close(self) -> None:
        pass


class JobRunner:
    def __init__(self, app: App) -> None:
        self.app = app
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: _Task | None = None  # the loop's: the file in the job thread's hands
        self._stopping = False
        self._progress_at = 0.0

    @property
    def db(self) -> JobStore:
        return JobStore(self.app.store)

    def uploads(self, job_id: str | None = None) -> Path:
        root = self.app.store.root / UPLOADS
        return root / job_id if job_id else root

    # ------------------------------------------------------------------ the loop's side
    def start(self) -> None:
        """Resume queued and interrupted jobs."""
        self._loop = asyncio.get_running_loop()
        requeued = self.db.resume()
        if requeued:
            log.info("jobs: %d file(s) interrupted by the last stop go back to the queue", requeued)
        for part in self.uploads().glob("*/.part-*"):  # uploads cut off by a crash
            with contextlib.suppress(OSError):
                part.unlink()
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)
        self._thread.start()
        self.kick()

    async def stop(self) -> None:
        """Stop taking new files; the file in hand stays queued for the next start."""
        self._stopping = True
        task = self._current
        if task is not None:
            task.stop.set()
        self._tasks.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, JOIN_S)
        if task is not None:
            self.db.requeue(task.work.job_id, task.work.idx)

    def kick(self) -> None:
        """Hand the next queued file to the job thread if it is idle."""
        if self._current is not None or self._stopping or self._thread is None:
            return
        work = self.db.take()
        if work is None:
            return
        self._current = _Task(work)
        self._progress_at = 0.0
        self._tasks.put(self._current)
        self.emit(work.job_id, work.idx)

    def cancel(self, job_id: str) -> bool:
        """Cancel what is left of a job (the file in hand after its current window); False: nothing left."""
        changed = self.db.cancel(job_id)
        self._interrupt(job_id)
        if changed:
            self.emit(job_id, None)
        return changed

    def delete(self, job_id: str) -> None:
        """The job, its records and its uploaded files."""
        self._interrupt(job_id)
        self.db.delete(job_id)
        shutil.rmtree(self.uploads(job_id), ignore_errors=True)
        self.app.bus.emit("job", {"job_id": job_id, "status": "deleted", "files_done": 0, "files_total": 0})

    def _interrupt(self, job_id: str) -> None:
        task = self._current
        if task is not None and task.work.job_id == job_id:
            task.stop.set()

    def emit(self, job_id: str, idx: int | None) -> None:
        summary = self.db.summary(job_id)
        if summary is None:
            return
        body: dict[str, Any] = {"job_id": job_id, **summary}
        if idx is not None:
            body["file"] = self.db.file(job_id, idx, public=True)
        self.app.bus.emit("job", body)

    def _progress(self, task: _Task, value: float) -> None:
        if task is not self._current or self._stopping or task.stop.is_set():
            return
        self.db.progress(task.work.job_id, task.work.idx, value)
        self.emit(task.work.job_id, task.work.idx)

    def _done(self, task: _Task, outcome: Outcome) -> None:
        if self._stopping:
            return  # abandoned: `stop` puts it back in the queue
        self._current = None
        w = task.work
        rid = self.db.complete_file(w, outcome)
        if rid is not None:
            state = "done" if outcome.transcript is not None else f"failed: {outcome.error}"
            log.info("job %s: file %d %s", w.job_id, w.idx, state)
            self.emit(w.job_id, w.idx)
        self.kick()

    def _post(self, action: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(action, *args)

    # ------------------------------------------------------------------ the job thread
    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            outcome = self._transcribe(task)
            self._post(self._done, task, outcome)

    def _transcribe(self, task: _Task) -> Outcome:
        w = task.work
        path = self.app.store.root / w.path
        total = (w.duration_s or 0.0) * SAMPLE_RATE
        seen = [0, 0.0]  # samples transcribed, when progress was last posted

        def on_audio(samples: int) -> None:
            seen[0] += samples
            now = time.monotonic()
            if total > 0 and now - seen[1] >= PROGRESS_EVERY_S:
                seen[1] = now
                self._post(self._progress, task, min(0.99, seen[0] / total))

        try:
            runner = self.app.files.transcriber(FileOptions.from_dict(w.options), interactive=False)
            runner.engine = _Watched(runner.engine, task.stop, on_audio)
            return next(iter(runner.run([path])))
        except Exception as exc:  # outside any file's own failure handling: still this file's failure only
            log.debug("job %s file %d failed", w.job_id, w.idx, exc_info=True)
            return Outcome(path, error=describe(exc))
