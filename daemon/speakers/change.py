"""Did another voice take over in the live utterance in progress?

A live final carries one speaker, and the segmenter ends an utterance only at a pause, so two people who
speak back to back would share one final and one label. While speech goes on, the segmenter thread asks
`TurnWatch.check` after each frame; about once a second of speech (from 2 s on) it runs segmentation-3.0 on
the utterance's last 10 s. When one local voice stops and another starts (each with at least `MIN_SIDE_S` of
speech on its side) and the CAM++ embeddings of the two sides are not alike (cosine < `DIFFERENT`), the
utterance is cut between them (`Segmenter.split_at`): the first part becomes a final of its own, the second
goes on. Blocking work, on the segmenter thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from daemon.audio.decode import SAMPLE_RATE
from daemon.audio.segmenter import Event, Segmenter
from daemon.speakers.embed import Embedder
from daemon.speakers.models import SpeakerModels
from daemon.speakers.segment import FRAME, FRAME_CENTRE, WINDOW, Segmentation, gather

log = logging.getLogger(__name__)

MIN_SIDE_S = 1.0  # speech of each voice, alone, on its side of the change
OVERLAP_S = 0.5  # the two voices may overlap this much around the change
DIFFERENT = 0.5  # cosine similarity of the two sides below which they are two people
CHECK_EVERY_S = 1.0
FIRST_CHECK_S = 2.0

Detect = Callable[[npt.NDArray[np.float32]], int | None]


class ChangeDetector:
    """`detector(audio)` -> the sample index in `audio` (<= 10 s) where a second voice takes over, or None."""

    def __init__(self, models: SpeakerModels, threads: int = 1) -> None:
        self.segmentation = Segmentation(models.segmentation, threads)
        self.embedder = Embedder(models.embedding, threads)

    def __call__(self, audio: npt.NDArray[np.float32]) -> int | None:
        act = self.segmentation.window(audio[-WINDOW:], 0, pad=False).activity > 0
        base = max(audio.size - WINDOW, 0)
        found = _candidate(act)
        if found is None:
            return None
        first, second, cut = found
        alone = act.sum(axis=1) == 1
        before = gather(audio[base:], act[:, first] & alone & (np.arange(act.shape[0]) < cut))
        after = gather(audio[base:], act[:, second] & alone & (np.arange(act.shape[0]) >= cut))
        a, b = self.embedder.embed(before), self.embedder.embed(after)
        if a is None or b is None or float(a @ b) >= DIFFERENT:
            return None
        return base + cut * FRAME + FRAME_CENTRE


def _candidate(act: npt.NDArray[np.bool_]) -> tuple[int, int, int] | None:
    """(first voice, second voice, frame where the second takes over) for the earliest change in which each
    voice has MIN_SIDE_S on its side and they overlap at most OVERLAP_S; None when there is none."""
    side = MIN_SIDE_S * SAMPLE_RATE / FRAME
    overlap = OVERLAP_S * SAMPLE_RATE / FRAME
    best: tuple[int, int, int] | None = None
    for a in range(act.shape[1]):
        for b in range(act.shape[1]):
            on_a, on_b = np.flatnonzero(act[:, a]), np.flatnonzero(act[:, b])
            if a == b or not on_a.size or not on_b.size:
                continue
            last_a, first_b = int(on_a[-1]), int(on_b[0])
            if first_b < last_a - overlap or (on_a < first_b).sum() < side or (on_b > last_a).sum() < side:
                continue
            cut = (last_a + first_b + 1) // 2
            if best is None or cut < best[2]:
                best = (a, b, cut)
    return best


class TurnWatch:
    """Owned by the segmenter thread: decides when to ask the detector, and cuts the utterance it answers for."""

    def __init__(self, detect: Detect) -> None:
        self.detect: Detect | None = detect
        self._start = -1
        self._next = 0

    def check(self, seg: Segmenter) -> list[Event]:
        if self.detect is None or not seg.in_speech or seg.silence_samples:
            return []
        if seg.current_start != self._start:
            self._start, self._next = seg.current_start, int(FIRST_CHECK_S * SAMPLE_RATE)
        if seg.position - seg.current_start < self._next:
            return []
        self._next = seg.position - seg.current_start + int(CHECK_EVERY_S * SAMPLE_RATE)
        audio = seg.current_audio()
        try:
            at = self.detect(audio)
        except Exception as exc:  # the labels lose precision; speech recognition goes on
            log.warning("speaker change detection failed, off from now: %s", exc)
            self.detect = None
            return []
        if at is None:
            return []
        log.debug("another voice at %.2f s into the utterance", at / SAMPLE_RATE)
        return seg.split_at(seg.current_start + at)
