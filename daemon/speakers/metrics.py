"""Diarization error rate: (missed speech + false alarm + speaker confusion) / reference speech, on a 10 ms grid,
with a collar around each reference turn's edges left unscored and the best one-to-one mapping of hypothesis
speakers to reference speakers (exhaustive for small counts, which is all a meeting has)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

STEP = 0.01


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class Der:
    der: float
    missed: float  # seconds
    false_alarm: float
    confusion: float
    scored: float  # seconds of reference speech scored


def _grid(spans: Sequence[Span], names: list[str], frames: int) -> npt.NDArray[np.bool_]:
    grid = np.zeros((frames, len(names)), dtype=bool)
    for s in spans:
        grid[round(s.start / STEP) : round(s.end / STEP), names.index(s.speaker)] = True
    return grid


def _best_match(co: npt.NDArray[np.int64]) -> int:
    """Largest total of co[r, h] over one-to-one pairings."""
    nr, nh = co.shape
    if nr == 0 or nh == 0:
        return 0
    if nr > nh:
        return _best_match(co.T)
    return max(int(sum(co[r, h] for r, h in enumerate(perm))) for perm in itertools.permutations(range(nh), nr))


def der(reference: Sequence[Span], hypothesis: Sequence[Span], collar: float = 0.25) -> Der:
    end = max([s.end for s in (*reference, *hypothesis)], default=0.0)
    frames = int(np.ceil(end / STEP)) + 1
    ref_names = sorted({s.speaker for s in reference})
    hyp_names = sorted({s.speaker for s in hypothesis})
    ref, hyp = _grid(reference, ref_names, frames), _grid(hypothesis, hyp_names, frames)
    scored = np.ones(frames, dtype=bool)
    c = round(collar / STEP)
    for s in reference:
        for edge in (round(s.start / STEP), round(s.end / STEP)):
            scored[max(edge - c, 0) : edge + c] = False
    ref, hyp = ref[scored], hyp[scored]
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    co = ref.T.astype(np.int64) @ hyp.astype(np.int64)
    correct = _best_match(co)
    missed = float(np.maximum(n_ref - n_hyp, 0).sum())
    false_alarm = float(np.maximum(n_hyp - n_ref, 0).sum())
    confusion = float(np.minimum(n_ref, n_hyp).sum() - correct)
    total = float(n_ref.sum())
    rate = (missed + false_alarm + confusion) / total if total else 0.0
    return Der(rate, missed * STEP, false_alarm * STEP, confusion * STEP, total * STEP)
