"""One model serves everything: the live worker runs engine calls from other threads (API, jobs, Wyoming) in a
fixed order: live finals, then interactive calls, then partials and background (job) windows take turns; after
the worker stops, a call fails at once with EngineUnavailable instead of hanging its caller."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from daemon.live.events import DecodeContext, FinalText, Job
from daemon.live.worker import AsrWorker, EngineUnavailable, SharedEngine
from daemon.settings import TextSettings
from daemon.text.pipeline import TextPipeline
from daemon.transcript import Audio, DecodeOptions, EngineInfo, Segment, Transcript


class GatedEngine:
    """Records the order of calls by the first sample of each audio; the first call blocks until released,
    so that everything else queues up behind it."""

    def __init__(self) -> None:
        self.info = EngineInfo("fake", "fake", "cpu", "int8")
        self.order: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.called = threading.Condition()  # notified after each call is recorded

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        tag = int(audios[0][0])
        if not self.order:
            self.entered.set()
            assert self.release.wait(10)
        with self.called:
            self.order.append(tag)
            self.called.notify_all()
        return [Transcript(str(tag), "en", 1.0, (Segment(0.0, 0.1, str(tag)),)) for _ in audios]

    def close(self) -> None:
        pass


def audio(tag: int) -> Audio:
    return np.full(1600, tag, dtype=np.float32)


def job(tag: int) -> Job:
    return Job((tag, tag), audio(tag), f"u{tag}", DecodeContext(DecodeOptions()))


@pytest.fixture
def worker() -> tuple[AsrWorker, GatedEngine, list[object]]:
    engine = GatedEngine()
    posted: list[object] = []
    text = TextPipeline(TextSettings(itn=False))
    w = AsrWorker(engine, text, DecodeContext(DecodeOptions()), posted.append)
    w.start()
    yield w, engine, posted
    engine.release.set()
    w.stop()
    w.join(5)


def test_live_finals_first_then_interactive_then_turns(worker: tuple[AsrWorker, GatedEngine, list[object]]) -> None:
    w, engine, posted = worker
    first = w.call([audio(1)], DecodeOptions(), interactive=False)  # blocks inside the engine
    assert engine.entered.wait(5)
    background = [w.call([audio(t)], DecodeOptions(), interactive=False) for t in (10, 11)]
    interactive = w.call([audio(20)], DecodeOptions(), interactive=True)
    w.add_final(job(40))
    w.add_partial(job(30))  # (a final clears the partial slot: its utterance has ended)
    engine.release.set()
    for f in (first, *background, interactive):
        f.result(10)
    # the final before the interactive call, that before the job's windows; partial and job windows alternate
    assert engine.order == [1, 40, 20, 30, 10, 11]
    assert any(isinstance(p, FinalText) and p.job.utterance_id == "u40" for p in posted)


def test_shared_engine_after_stop_fails_fast(worker: tuple[AsrWorker, GatedEngine, list[object]]) -> None:
    w, engine, _ = worker
    engine.release.set()
    shared = SharedEngine(w, interactive=True)
    assert shared.transcribe([audio(2)], DecodeOptions())[0].text == "2"
    w.stop()
    w.join(5)
    with pytest.raises(EngineUnavailable):
        shared.transcribe([audio(3)], DecodeOptions())


def test_calls_queued_at_stop_are_refused(worker: tuple[AsrWorker, GatedEngine, list[object]]) -> None:
    w, engine, _ = worker
    first = w.call([audio(1)], DecodeOptions(), interactive=True)
    assert engine.entered.wait(5)
    queued = w.call([audio(5)], DecodeOptions(), interactive=False)
    w.stop()
    engine.release.set()
    assert first.result(10)[0].text == "1"  # the call in hand is finished
    with pytest.raises(EngineUnavailable):
        queued.result(10)


def test_held_background_waits_for_the_live_final(worker: tuple[AsrWorker, GatedEngine, list[object]]) -> None:
    """While a live utterance waits for its final, job windows wait too (they would delay it by a window)."""
    w, engine, _ = worker
    first = w.call([audio(1)], DecodeOptions(), interactive=True)
    assert engine.entered.wait(5)
    w.hold_background(True)
    job_window = w.call([audio(10)], DecodeOptions(), interactive=False)
    w.add_partial(job(30))
    engine.release.set()
    first.result(10)
    wait_for(engine, 30)
    w.add_partial(job(31))  # unheld, the job window would take its turn before this partial
    wait_for(engine, 31)
    assert engine.order == [1, 30, 31] and not job_window.done()  # the job window still waits
    w.add_final(job(40))
    w.hold_background(False)  # the final is decided
    job_window.result(10)
    assert engine.order == [1, 30, 31, 40, 10]


def wait_for(engine: GatedEngine, tag: int) -> None:
    with engine.called:
        assert engine.called.wait_for(lambda: tag in engine.order, 5), engine.order


def test_a_stuck_speaker_embedding_does_not_hold_later_finals(monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedding past the timeout keeps its thread: the final goes without a label, and so do later ones
    without waiting, until it ends; then embeddings run again."""
    import daemon.live.worker as worker_module

    monkeypatch.setattr(worker_module, "EMBED_TIMEOUT_S", 0.05)
    w = AsrWorker(GatedEngine(), TextPipeline(TextSettings(itn=False)), DecodeContext(DecodeOptions()), print)
    stuck = threading.Event()
    w.embed_speaker = lambda audio: stuck.wait(30) and np.ones(3, np.float32)
    first = w._start_embedding(np.zeros(16000, np.float32))
    assert w._embedding(first) is None  # timed out: no label, the final goes on
    assert w._start_embedding(np.zeros(16000, np.float32)) is None  # no new work queued behind the stuck one
    stuck.set()
    assert first is not None and first.result(5) is not None
    again = w._start_embedding(np.zeros(16000, np.float32))
    assert again is not None and w._embedding(again) is not None  # it ended: labels again
    assert w._speaker_pool is not None
    w._speaker_pool.shutdown()
