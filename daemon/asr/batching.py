"""Batches by total audio seconds, shared by the FunASR and ONNX engines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from daemon.audio.decode import SAMPLE_RATE
from daemon.transcript import Audio, Transcript


def batches(durations: Sequence[float], max_seconds: float) -> list[list[int]]:
    """Indices grouped so each group's total audio stays under `max_seconds` (a longer chunk goes alone),
    longest first."""
    order = sorted(range(len(durations)), key=lambda i: -durations[i])
    out: list[list[int]] = []
    total = 0.0
    for i in order:
        if out and total + durations[i] <= max_seconds:
            out[-1].append(i)
            total += durations[i]
        else:
            out.append([i])
            total = durations[i]
    return out


def in_batches(
    audios: Sequence[Audio], max_seconds: float, run: Callable[[list[Audio]], list[Transcript]]
) -> list[Transcript]:
    """`run` on each batch; results back in input order."""
    out: list[Transcript | None] = [None] * len(audios)
    for group in batches([a.size / SAMPLE_RATE for a in audios], max_seconds):
        for i, t in zip(group, run([audios[i] for i in group]), strict=True):
            out[i] = t
    return [t for t in out if t is not None]
