"""Who spoke when in a file: segmentation windows -> one embedding per (window, local speaker) -> clustering
-> per-frame speakers -> turns. Blocking: run it on a worker thread.

1. pyannote segmentation-3.0 over 10 s windows (`step_s` apart) says, per 16.875 ms frame, which of up to 3
   local speakers talk (two at once where they overlap).
2. Each local speaker of each window gets one CAM++ embedding of the audio where it talks alone (or, when it
   never does, of all its frames); under `MIN_ITEM_S` of speech it gets none and is left out.
3. The embeddings are clustered (`cluster.agglomerate`: estimated count, or the count asked for), two local
   speakers of one window never together while another merge is possible.
4. Each frame takes as many speakers as the windows covering it counted (rounded mean), the best-scoring
   clusters; runs of frames become turns (gaps under `MERGE_GAP_S` closed, turns under `MIN_TURN_S` dropped).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from daemon.audio.decode import SAMPLE_RATE
from daemon.speakers.cluster import Bounds, agglomerate, centroids
from daemon.speakers.embed import Embedder, Vector
from daemon.speakers.models import SpeakerModels
from daemon.speakers.segment import FRAME, FRAME_CENTRE, LOCAL, WINDOW, Segmentation, Window, frames_of, gather
from daemon.speakers.speech import Spans, inside

log = logging.getLogger(__name__)

MIN_ITEM_S = 0.5
MERGE_GAP_S = 0.25
MIN_TURN_S = 0.2
SPLIT_GAP_S = 0.3
STEP_S = 10.0  # segmentation windows (10 s long) start this far apart: 5 s was 0.8 points better, twice the cost


@dataclass(frozen=True)
class Turn:
    start: float  # seconds
    end: float
    speaker: int  # 0-based; S1 = 0, in order of first appearance


@dataclass(frozen=True)
class Diarization:
    turns: tuple[Turn, ...]
    speakers: int
    centroids: npt.NDArray[np.float32]  # (speakers, 192), unit length

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(sorted(self.turns, key=lambda t: (t.start, t.speaker))))

    @cached_property
    def _starts(self) -> list[float]:
        return [t.start for t in self.turns]

    @cached_property
    def _longest(self) -> float:
        return max((t.end - t.start for t in self.turns), default=0.0)

    def near(self, start: float, end: float) -> tuple[Turn, ...]:
        """The turns that touch [start, end], found by bisection (a long file has thousands)."""
        lo = bisect.bisect_left(self._starts, start - self._longest)
        hi = bisect.bisect_right(self._starts, end)
        return tuple(t for t in self.turns[lo:hi] if t.end >= start)

    def speaker_at(self, start: float, end: float) -> int | None:
        """The speaker who talks most within [start, end] (the nearest turn when nobody does)."""
        if not self.turns:
            return None
        talk = np.zeros(self.speakers)
        for t in self.near(start, end):
            talk[t.speaker] += max(0.0, min(end, t.end) - max(start, t.start))
        if talk.max() > 0:
            return int(talk.argmax())
        mid = (start + end) / 2
        inside = self.near(mid, mid)  # a point (a zero-length word) in a turn
        if inside:
            return min(inside, key=lambda t: t.end - t.start).speaker
        return min(self.turns, key=lambda t: min(abs(t.start - mid), abs(t.end - mid))).speaker


@dataclass(frozen=True)
class _Item:
    window: int
    local: int
    frames: npt.NDArray[np.bool_]  # the window's frames this item covers
    seconds: float
    vector: Vector


class Diarizer:
    def __init__(self, models: SpeakerModels, threads: int = 1) -> None:
        self.models = models
        self.embedder = Embedder(models.embedding, threads)
        self.segmentation = Segmentation(models.segmentation, threads)

    def __call__(
        self, audio: npt.NDArray[np.float32], bounds: Bounds, step_s: float = STEP_S, speech: Spans | None = None
    ) -> Diarization:
        return self.run([audio], bounds, step_s, speech)

    def run(
        self,
        blocks: Iterable[npt.NDArray[np.float32]],
        bounds: Bounds,
        step_s: float = STEP_S,
        speech: Spans | None = None,
    ) -> Diarization:
        """Diarize a stream of 16 kHz blocks; holds one window of audio (plus a block), never the whole file.
        `speech`: where the VAD heard speech (daemon/speakers/speech.py); outside it nobody talks."""
        step = max(int(step_s * SAMPLE_RATE) // FRAME, 1) * FRAME
        windows, items, total = self._windows(blocks, step, speech)
        if not items:
            return Diarization((), 0, np.zeros((0, 192), np.float32))
        vectors = np.stack([it.vector for it in items])
        groups = [(it.window, it.local) for it in items]
        labels = agglomerate(vectors, [it.seconds for it in items], bounds, groups)
        frames = _frame_speakers(windows, _assignments(windows, items, labels), int(labels.max()) + 1, total)
        turns = _turns(frames)
        order = _first_appearance(turns)
        turns = [Turn(t.start, t.end, order[t.speaker]) for t in turns]
        cents = centroids(vectors, labels)
        used = sorted(order, key=order.__getitem__)
        return Diarization(tuple(turns), len(used), cents[used] if used else np.zeros((0, 192), np.float32))

    def _windows(
        self, blocks: Iterable[npt.NDArray[np.float32]], step: int, speech: Spans | None
    ) -> tuple[list[Window], list[_Item], int]:
        windows: list[Window] = []
        items: list[_Item] = []
        buf, buf_start, start, total = np.zeros(0, np.float32), 0, 0, 0

        def take(at: int) -> None:
            chunk = buf[at - buf_start : at - buf_start + WINDOW]
            win = _unheard(at, chunk.size, speech) or _masked(self.segmentation.window(chunk, at), speech)
            items.extend(self._items(chunk, len(windows), win))
            windows.append(win)

        for block in blocks:
            buf = np.concatenate([buf, block.astype(np.float32, copy=False)])
            total += block.size
            while start + WINDOW <= total:
                take(start)
                start += step
                buf, buf_start = buf[start - buf_start :], start
        last_end = windows[-1].start + WINDOW if windows else 0
        if total > 0 and last_end < total:  # the rest after the last whole window: a shorter (zero-padded) one
            take(buf_start)
        return windows, items, total

    def _items(self, chunk: npt.NDArray[np.float32], index: int, win: Window) -> list[_Item]:
        """One item per run of a local speaker's speech (runs split at pauses of SPLIT_GAP_S): the model
        sometimes gives two people who take turns one local label; a pause between them separates them."""
        out = []
        alone = win.activity.sum(axis=1) == 1
        for k in range(win.activity.shape[1]):
            for run in _runs(win.activity[:, k] > 0):
                chosen = run & alone
                if chosen.sum() * FRAME < MIN_ITEM_S * SAMPLE_RATE:
                    chosen = run
                seconds = chosen.sum() * FRAME / SAMPLE_RATE
                if seconds < MIN_ITEM_S:
                    continue
                vector = self.embedder.embed(gather(chunk, chosen))
                if vector is not None:
                    out.append(_Item(index, k, run, float(seconds), vector))
        return out


def _unheard(at: int, samples: int, speech: Spans | None) -> Window | None:
    """The window, silent, when the VAD heard nobody in it: what `_masked` would make of it, without running the
    model (a 2 h file of silence cost a minute of CPU)."""
    if speech is None:
        return None
    n = frames_of(max(min(samples, WINDOW), 251))
    return None if _heard(speech, at, n).any() else Window(at, np.zeros((n, LOCAL), np.float32))


def _masked(win: Window, speech: Spans | None) -> Window:
    """The window with its frames outside the speech spans silenced (the VAD heard nobody there)."""
    if speech is None:
        return win
    keep = _heard(speech, win.start, win.activity.shape[0])
    return Window(win.start, win.activity * keep[:, None].astype(np.float32))


def _heard(speech: Spans, at: int, frames: int) -> npt.NDArray[np.bool_]:
    """Per frame of the window that starts at sample `at`, whether its centre lies in speech."""
    return inside(speech, (at + np.arange(frames) * FRAME + FRAME_CENTRE) / SAMPLE_RATE)


def _runs(active: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.bool_]]:
    """`active` split into masks of its runs, runs closer than SPLIT_GAP_S joined."""
    padded = np.concatenate([[0], active.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    spans: list[list[int]] = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if spans and (a - spans[-1][1]) * FRAME < SPLIT_GAP_S * SAMPLE_RATE:
            spans[-1][1] = int(b)
        else:
            spans.append([int(a), int(b)])
    out = []
    for a, b in spans:
        mask = np.zeros(active.shape[0], dtype=bool)
        mask[a:b] = True
        out.append(mask & active)
    return out


def _assignments(
    windows: list[Window], items: list[_Item], labels: npt.NDArray[np.int64]
) -> list[npt.NDArray[np.int64]]:
    """Per window, per frame and local speaker: its cluster (-1: none). A run too short for an embedding
    takes the cluster of the same local speaker's longest run in that window."""
    out = [np.full(w.activity.shape, -1, dtype=np.int64) for w in windows]
    longest: dict[tuple[int, int], tuple[float, int]] = {}
    for it, lab in zip(items, labels, strict=True):
        out[it.window][it.frames, it.local] = int(lab)
        key = (it.window, it.local)
        if it.seconds > longest.get(key, (0.0, -1))[0]:
            longest[key] = (it.seconds, int(lab))
    for (w, k), (_, lab) in longest.items():
        col = out[w][:, k]
        col[(col < 0) & (windows[w].activity[:, k] > 0)] = lab
    return out


def _frame_speakers(
    windows: list[Window], assigned: list[npt.NDArray[np.int64]], clusters: int, samples: int
) -> npt.NDArray[np.bool_]:
    """Per frame of the file, which clusters talk. A window's frames count more near its centre (Hann
    weights), where the model has context on both sides."""
    total = samples // FRAME + 1
    score = np.zeros((total, clusters + 1), np.float32)  # the last column collects unassigned speech
    count = np.zeros(total, np.float32)
    cover = np.zeros(total, np.float32)
    for win, clus in zip(windows, assigned, strict=True):
        first = round(win.start / FRAME)
        act = win.activity[: max(total - first, 0)]
        n = act.shape[0]
        weight = np.hanning(n + 2)[1:-1].astype(np.float32) if n > 2 else np.ones(n, np.float32)
        rows = np.arange(first, first + n)
        cover[rows] += weight
        count[rows] += weight * act.sum(axis=1)
        for k in range(act.shape[1]):
            np.add.at(score, (rows, clus[:n, k]), weight * act[:, k])
    score = score[:, :clusters]
    want = np.rint(count / np.maximum(cover, 1e-6)).astype(int)
    ranked = np.argsort(-score, axis=1)
    out = np.zeros((total, clusters), dtype=bool)
    for n in range(1, min(clusters, 3) + 1):
        rows = np.flatnonzero(want >= n)
        cols = ranked[rows, n - 1]
        ok = score[rows, cols] > 0
        out[rows[ok], cols[ok]] = True
    return out


def _turns(frames: npt.NDArray[np.bool_]) -> list[Turn]:
    step = FRAME / SAMPLE_RATE
    offset = (FRAME_CENTRE - FRAME // 2) / SAMPLE_RATE
    turns: list[Turn] = []
    for c in range(frames.shape[1]):
        padded = np.concatenate([[False], frames[:, c], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        runs: list[tuple[float, float]] = []
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            start, end = offset + a * step, offset + b * step
            if runs and start - runs[-1][1] < MERGE_GAP_S:
                runs[-1] = (runs[-1][0], end)
            else:
                runs.append((start, end))
        turns += [Turn(round(s, 3), round(e, 3), c) for s, e in runs if e - s >= MIN_TURN_S]
    return sorted(turns, key=lambda t: (t.start, t.speaker))


def _first_appearance(turns: list[Turn]) -> dict[int, int]:
    order: dict[int, int] = {}
    for t in turns:
        order.setdefault(t.speaker, len(order))
    return order
