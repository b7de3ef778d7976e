"""Did another voice take over in the live utterance in progress?

A live final carries one speaker, and the segmenter ends an utterance only at a pause, so two people who
speak back to back would share one final and one label. While speech goes on, the segmenter thread asks
`TurnWatch.check` after each frame; about once a second of speech (from 2 s on) it runs segmentation-3.0 on
the utterance's last 10 s. When one local voice stops and another starts (each with at least `MIN_SIDE_S` of
speech on its side) and the CAM++ embeddings of the two sides (up to `SIDE_MAX_S` each, nearest the change)
are not alike (cosine < `DIFFERENT`), the utterance is cut between them (`Segmenter.split_at`): the first part
becomes a final of its own, the second goes on. The network sometimes gives one person two local labels: such
a candidate, turned down by the embeddings, is remembered for the utterance and not tried again, and a later
candidate in the same window is tried. Blocking work, on the segmenter thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
SIDE_MAX_S = 3.0  # each side's embedding takes at most this much of its speech, nearest the change
TRIES = 2  # candidates confirmed per check, earliest first
SAME_CUT_S = 0.5  # a candidate this close to one the embeddings already turned down is not tried again
CHECK_EVERY_S = 1.0
FIRST_CHECK_S = 2.0


@dataclass(frozen=True)
class Verdict:
    cut: int | None  # sample index in the audio where a second voice takes over (None: no change)
    rejected: tuple[int, ...] = ()  # candidates the embeddings found to be one voice (sample indices)


Detect = Callable[[npt.NDArray[np.float32], Sequence[int]], Verdict]


class ChangeDetector:
    """`detector(audio, skip)` -> where in `audio` (its last 10 s) a second voice takes over. Candidates near a
    sample index in `skip` (turned down before) are not tried again."""

    def __init__(self, models: SpeakerModels, threads: int = 1, embedder: Embedder | None = None) -> None:
        self.segmentation = Segmentation(models.segmentation, threads)
        self.embedder = embedder or Embedder(models.embedding, threads)  # the live worker's, when given

    def __call__(self, audio: npt.NDArray[np.float32], skip: Sequence[int] = ()) -> Verdict:
        base = max(audio.size - WINDOW, 0)
        tail = audio[base:]
        act = self.segmentation.window(tail, 0, pad=False).activity > 0
        rejected: list[int] = []
        tries = 0
        for first, second, cut in _candidates(act):
            at = base + cut * FRAME + FRAME_CENTRE
            if any(abs(at - s) < SAME_CUT_S * SAMPLE_RATE for s in skip):
                continue
            if tries == TRIES:
                break
            tries += 1
            similar = self._similarity(tail, act, first, second, cut)
            if similar is not None and similar < DIFFERENT:
                return Verdict(at, tuple(rejected))
            if similar is not None:
                rejected.append(at)
        return Verdict(None, tuple(rejected))

    def _similarity(
        self, tail: npt.NDArray[np.float32], act: npt.NDArray[np.bool_], first: int, second: int, cut: int
    ) -> float | None:
        """Cosine similarity of the two voices' speech (alone) on either side of `cut`; None: too little."""
        alone = act.sum(axis=1) == 1
        frames = np.arange(act.shape[0])
        side = int(SIDE_MAX_S * SAMPLE_RATE)
        before = gather(tail, act[:, first] & alone & (frames < cut))[-side:]
        after = gather(tail, act[:, second] & alone & (frames >= cut))[:side]
        a, b = self.embedder.embed(before), self.embedder.embed(after)
        return None if a is None or b is None else float(a @ b)


def _candidates(act: npt.NDArray[np.bool_]) -> list[tuple[int, int, int]]:
    """(first voice, second voice, frame where the second takes over) for each change in which each voice has
    MIN_SIDE_S on its side, they overlap at most OVERLAP_S and nobody else talks between them; earliest first."""
    side = MIN_SIDE_S * SAMPLE_RATE / FRAME
    overlap = OVERLAP_S * SAMPLE_RATE / FRAME
    found: list[tuple[int, int, int]] = []
    for a in range(act.shape[1]):
        for b in range(act.shape[1]):
            on_a, on_b = np.flatnonzero(act[:, a]), np.flatnonzero(act[:, b])
            if a == b or not on_a.size or not on_b.size:
                continue
            last_a, first_b = int(on_a[-1]), int(on_b[0])
            if first_b < last_a - overlap or (on_a < first_b).sum() < side or (on_b > last_a).sum() < side:
                continue
            lo, hi = min(last_a, first_b), max(last_a, first_b) + 1
            others = [c for c in range(act.shape[1]) if c not in (a, b)]
            if act[lo:hi, others].any():  # a third voice between them: the change is theirs, not this one
                continue
            found.append((a, b, (last_a + first_b + 1) // 2))
    return sorted(found, key=lambda c: c[2])


class TurnWatch:
    """Owned by the segmenter thread: decides when to ask the detector, and cuts the utterance it answers for."""

    def __init__(self, detect: Detect) -> None:
        self.detect: Detect | None = detect
        self._start = -1
        self._next = 0
        self._rejected: list[int] = []  # stream offsets of the utterance's candidates found to be one voice

    def check(self, seg: Segmenter) -> list[Event]:
        if self.detect is None or not seg.in_speech or seg.silence_samples:
            return []
        start = seg.current_start
        if start != self._start:
            self._start, self._next, self._rejected = start, int(FIRST_CHECK_S * SAMPLE_RATE), []
        if seg.position - start < self._next:
            return []
        self._next = seg.position - start + int(CHECK_EVERY_S * SAMPLE_RATE)
        try:
            verdict = self.detect(seg.current_audio(), [r - start for r in self._rejected])
        except Exception as exc:  # the labels lose precision; speech recognition goes on
            log.warning("speaker change detection failed, off from now: %s", exc)
            self.detect = None
            return []
        self._rejected += [start + r for r in verdict.rejected]
        if verdict.cut is None:
            return []
        log.debug("another voice at %.2f s into the utterance", verdict.cut / SAMPLE_RATE)
        return seg.split_at(start + verdict.cut)
