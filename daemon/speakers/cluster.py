"""Grouping embeddings into speakers.

Files: agglomerative clustering with average linkage over cosine similarity, each item weighted by its
seconds of speech; it stops when the best remaining pair is less similar than the threshold (the number of
speakers is estimated so), or at the number asked for, within min..max. Items that cannot be the same speaker
(two local speakers of one segmentation window) are never merged while another merge is possible.

Live: an online clustering over a session. Each final's embedding joins the most similar speaker when the
similarity reaches the threshold (the speaker's centroid then moves), or starts a new one. Labels are
stable: S1 stays S1 for the whole session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]
BLOCKED = -10.0  # similarity of a pair that must not merge (below any cosine)


@dataclass(frozen=True)
class Bounds:
    speakers: int | None = None  # exactly this many (None: estimate)
    min_speakers: int = 1
    max_speakers: int = 8
    threshold: float = 0.3  # average-linkage cosine similarity below which two groups stay apart
    min_seconds: float = 3.0  # an estimated speaker needs this much speech (else it joins the nearest)

    def limits(self, items: int) -> tuple[int, int]:
        if self.speakers is not None:
            k = max(1, min(self.speakers, items))
            return k, k
        low = max(1, min(self.min_speakers, items))
        return low, max(low, min(self.max_speakers, items))


def _best(sim: Matrix, alive: npt.NDArray[np.bool_], allow_blocked: bool) -> tuple[int, int, float]:
    masked = np.where(alive[:, None] & alive[None, :], sim, -np.inf)
    np.fill_diagonal(masked, -np.inf)
    if not allow_blocked:
        masked[masked <= BLOCKED] = -np.inf
    flat = int(np.argmax(masked))
    i, j = divmod(flat, sim.shape[0])
    return i, j, float(masked[i, j])


def agglomerate(
    vectors: Matrix, weights: Sequence[float], bounds: Bounds, groups: Sequence[tuple[int, int]] | None = None
) -> Labels:
    """Cluster unit vectors; returns a label per item, 0.. in order of first item. `groups` (window, local
    speaker) per item: items of one window with different local speakers are kept apart where possible."""
    n = vectors.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    low, high = bounds.limits(n)
    sim = (vectors @ vectors.T).astype(np.float32)
    if groups is not None:
        win, local = np.asarray([g[0] for g in groups]), np.asarray([g[1] for g in groups])
        sim[(win[:, None] == win[None, :]) & (local[:, None] != local[None, :])] = BLOCKED
    w = np.asarray(weights, dtype=np.float64).copy()
    alive = np.ones(n, dtype=bool)
    owner = np.arange(n)
    clusters = n
    while clusters > low:
        i, j, best = _best(sim, alive, allow_blocked=False)
        if best == -np.inf:
            i, j, best = _best(sim, alive, allow_blocked=True)  # more clusters than allowed: relax
        if best < bounds.threshold and clusters <= high:
            break
        merged = (w[i] * sim[i] + w[j] * sim[j]) / (w[i] + w[j])
        blocked = (sim[i] <= BLOCKED) | (sim[j] <= BLOCKED)
        sim[i] = np.where(blocked, BLOCKED, merged)
        sim[:, i] = sim[i]
        w[i] += w[j]
        alive[j] = False
        owner[owner == j] = i
        clusters -= 1
    if bounds.speakers is None:
        owner = _absorb_small(vectors, np.asarray(weights, dtype=np.float64), owner, bounds.min_seconds, low)
    return _first_seen(owner)


def _absorb_small(
    vectors: Matrix, weights: npt.NDArray[np.float64], owner: npt.NDArray[np.int64], min_seconds: float, low: int
) -> npt.NDArray[np.int64]:
    """Clusters with less than `min_seconds` of speech join the most similar larger one (a few stray
    windows are not a person), as long as at least `low` clusters remain."""
    ids = list(np.unique(owner))
    total = {c: float(weights[owner == c].sum()) for c in ids}
    big = [c for c in ids if total[c] >= min_seconds]
    if not big:
        return owner
    small = sorted((c for c in ids if total[c] < min_seconds), key=total.__getitem__)
    keep = max(low - len(big), 0)  # the largest small ones stay when fewer than `low` are big
    moved = small[: len(small) - keep]
    cents = {c: vectors[owner == c].sum(axis=0) for c in big}
    out = owner.copy()
    for c in moved:
        v = vectors[owner == c].sum(axis=0)
        out[owner == c] = max(big, key=lambda b: float(cents[b] @ v) / max(float(np.linalg.norm(cents[b])), 1e-9))
    return out


def _first_seen(owner: npt.NDArray[np.int64]) -> Labels:
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(o), len(order)) for o in owner], dtype=np.int64)


def centroids(vectors: Matrix, labels: Labels) -> Matrix:
    k = int(labels.max()) + 1 if labels.size else 0
    out = np.zeros((k, vectors.shape[1]), np.float32)
    for c in range(k):
        v = vectors[labels == c].sum(axis=0)
        out[c] = v / max(float(np.linalg.norm(v)), 1e-9)
    return out


@dataclass
class OnlineSpeakers:
    """A session's speakers, owned by the event loop. `assign` returns a 0-based index (S1 = 0)."""

    threshold: float = 0.4
    max_speakers: int = 20
    sums: list[Matrix] = field(default_factory=list)

    def assign(self, vector: Matrix) -> int:
        if self.sums:
            cents = np.stack([s / max(float(np.linalg.norm(s)), 1e-9) for s in self.sums])
            sims = cents @ vector
            best = int(np.argmax(sims))
            if float(sims[best]) >= self.threshold or len(self.sums) >= self.max_speakers:
                self.sums[best] = self.sums[best] + vector
                return best
        self.sums.append(vector.astype(np.float32).copy())
        return len(self.sums) - 1

    def restore(self, index: int, vector: Matrix) -> None:
        """Replay a stored final (after a restart) so labels continue where they were."""
        while len(self.sums) <= index:
            self.sums.append(np.zeros_like(vector))
        self.sums[index] = self.sums[index] + vector

    def centroid(self, index: int) -> Matrix:
        s = self.sums[index]
        return (s / max(float(np.linalg.norm(s)), 1e-9)).astype(np.float32)


def label(index: int) -> str:
    return f"S{index + 1}"
