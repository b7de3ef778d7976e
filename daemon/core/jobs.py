"""Durable transcription jobs: queued in SQLite, run one file at a time on a job thread through the shared
engine (background priority: live finals and API requests go first), resumed after a restart.

The loop owns everything: it takes the next files from the store (the oldest job first; up to `asr.batch_size`
files of that job at once, so that short files share the engine's batches as they do in `asrbox transcribe`;
one file, one window per engine call while live speech is listened to, so that a live final waits for one
window at most),
hands them to the job thread, and as the thread posts each file's outcome back it records the file and its job
row in one transaction (`JobStore.complete_file`) and emits a bus event `job`; when the thread is done with
them it hands over the next. The thread only transcribes. Cancelling or stopping sets the stop flag of what is
in hand: the engine wrapper refuses the next window, so the files end after the current one. At shutdown the
files in hand are abandoned and stay queued (no failed record); after a crash they are 'running' in the store
and go back to the queue at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
NICE = 10  # as `asrbox transcribe --nice`


class Interrupted(Exception):
    """The file was cancelled, or the daemon is stopping: no more windows for it."""


@dataclass
class _Task:
    """Files of one job in the job thread's hands."""

    works: list[Work]
    batch_size: int  # windows per engine call: 1 while live speech is listened to (live first)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def job_id(self) -> str:
        return self.works[0].job_id


class _Watched:
    """The shared engine as a job sees it: refuses the next window once the stop flag is set, and reports how
    much audio of each file (by its index in the run: `DecodeOptions.groups`) has been transcribed."""

    def __init__(self, inner: Engine, stop: threading.Event, on_audio: Callable[[list[int], list[int]], None]) -> None:
        self.inner = inner
        self.info = inner.info
        self.stop = stop
        self.on_audio = on_audio

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        if self.stop.is_set():
            raise Interrupted("stopped before this window")
        out = self.inner.transcribe(audios, options)
        self.on_audio(list(options.groups or [0] * len(audios)), [int(a.size) for a in audios])
        return out

    def close(self) -> None:
        pass


class JobRunner:
    def __init__(self, app: App) -> None:
        self.app = app
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: _Task | None = None  # the loop's: the files in the job thread's hands
        self._stopping = False

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
        """Stop taking new files; the files in hand stay queued for the next start."""
        self._stopping = True
        task = self._current
        if task is not None:
            task.stop.set()
        self._tasks.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, JOIN_S)
        if task is not None:
            for w in task.works:
                self.db.requeue(w.job_id, w.idx)  # those still running (the others are recorded)

    def kick(self) -> None:
        """Hand the next queued files to the job thread if it is idle."""
        if self._current is not None or self._stopping or self._thread is None:
            return
        size = 1 if self.app.listening else self.app.settings.asr.batch_size  # live first: short engine calls
        works = self.db.take(size)
        if not works:
            return
        self._current = _Task(works, size)
        self._tasks.put(self._current)
        for w in works:
            self.emit(w.job_id, w.idx)

    def cancel(self, job_id: str) -> bool:
        """Cancel what is left of a job (the files in hand after the current window); False: nothing left."""
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
        if task is not None and task.job_id == job_id:
            task.stop.set()

    def emit(self, job_id: str, idx: int | None) -> None:
        summary = self.db.summary(job_id)
        if summary is None:
            return
        body: dict[str, Any] = {"job_id": job_id, **summary}
        if idx is not None:
            body["file"] = self.db.file(job_id, idx, public=True)
        self.app.bus.emit("job", body)

    def _progress(self, task: _Task, values: dict[int, float]) -> None:
        if task is not self._current or self._stopping or task.stop.is_set():
            return
        for i, value in values.items():
            w = task.works[i]
            self.db.progress(w.job_id, w.idx, value)
            self.emit(w.job_id, w.idx)

    def _file_done(self, task: _Task, i: int, outcome: Outcome) -> None:
        if self._stopping:
            return  # abandoned: `stop` puts it back in the queue
        w = task.works[i]
        rid = self.db.complete_file(w, outcome)
        if rid is not None:
            state = "done" if outcome.transcript is not None else f"failed: {outcome.error}"
            log.info("job %s: file %d %s", w.job_id, w.idx, state)
            self.emit(w.job_id, w.idx)

    def _task_done(self, task: _Task) -> None:
        if self._stopping:
            return
        self._current = None
        self.kick()

    def _post(self, action: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(action, *args)

    # ------------------------------------------------------------------ the job thread
    def _run(self) -> None:
        with contextlib.suppress(OSError):  # this thread's decoding and VAD yield the CPU to the live path
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while True:
            task = self._tasks.get()
            if task is None:
                return
            for i, outcome in enumerate(self._transcribe(task)):
                self._post(self._file_done, task, i, outcome)
            self._post(self._task_done, task)

    def _transcribe(self, task: _Task) -> Iterator[Outcome]:
        """Each file's outcome in order; whatever fails outside a file's own handling fails the files left."""
        paths = [self.app.store.root / w.path for w in task.works]
        totals = [(w.duration_s or 0.0) * SAMPLE_RATE for w in task.works]
        seen = [0.0] * len(paths)
        last = [0.0]

        def on_audio(groups: list[int], sizes: list[int]) -> None:
            for g, n in zip(groups, sizes, strict=True):
                if 0 <= g < len(seen):
                    seen[g] += n
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                values = {g: min(0.99, seen[g] / totals[g]) for g in set(groups) if 0 <= g < len(seen) and totals[g]}
                self._post(self._progress, task, values)

        done = 0
        try:
            runner = self.app.files.transcriber(FileOptions.from_dict(task.works[0].options), interactive=False)
            runner.engine = _Watched(runner.engine, task.stop, on_audio)
            runner.batch_size = task.batch_size
            for outcome in runner.run(paths):
                done += 1
                yield outcome
        except Exception as exc:
            log.debug("job %s: files failed", task.job_id, exc_info=True)
            for path in paths[done:]:
                yield Outcome(path, error=describe(exc))
