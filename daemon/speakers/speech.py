"""Where a file holds speech, as the recognizer's VAD heard it: sorted, disjoint (start_s, end_s) spans.

File transcription already runs the VAD over every frame to cut the file into chunks; the same decisions tell
the diarizer where nobody speaks, so noise, music or a hum between turns gets no speaker (the segmentation
network alone takes some of it for a voice of its own) and a labelled turn never covers audio that the
recognizer found silent. Frames are widened by `PAD_S` on both sides and pauses under `CLOSE_S` closed, so
the mask trims the silences around turns, not the quiet consonants inside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from daemon.audio.decode import SAMPLE_RATE
from daemon.audio.vad import FRAME

PAD_S = 0.2
CLOSE_S = 0.5

Span = tuple[float, float]
Spans = tuple[Span, ...]


def voiced_spans(flags: Sequence[bool], offset_s: float, frame_s: float = FRAME / SAMPLE_RATE) -> list[Span]:
    """Runs of voiced frames (`flags`, one per VAD frame from `offset_s`) as time spans."""
    padded = np.concatenate([[0], np.asarray(flags, dtype=np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(offset_s + a * frame_s, offset_s + b * frame_s) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def merge(spans: Iterable[Span], pad_s: float = PAD_S, close_s: float = CLOSE_S) -> Spans:
    """Spans widened by `pad_s`, those closer than `close_s` joined; sorted and disjoint."""
    out: list[Span] = []
    for a, b in sorted(spans):
        a, b = max(0.0, a - pad_s), b + pad_s
        if out and a - out[-1][1] < close_s:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def inside(spans: Spans, times: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Per time, whether it lies within one of the (sorted, disjoint) spans."""
    if not spans:
        return np.zeros(times.shape, dtype=bool)
    starts = np.asarray([a for a, _ in spans])
    ends = np.asarray([b for _, b in spans])
    idx = np.searchsorted(starts, times, side="right") - 1
    ok = idx >= 0
    return ok & (times < ends[np.maximum(idx, 0)])
