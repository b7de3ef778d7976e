"""pyannote segmentation-3.0 on onnxruntime: 10 s windows -> per frame, which of 3 local speakers talk.

The network's 7 outputs are the powerset of 3 local speakers with at most 2 at once: {}, {1}, {2}, {3},
{1,2}, {1,3}, {2,3}. Local speaker k of one window has nothing to do with local speaker k of another: the
embedding + clustering step links them. Frames are 270 samples apart (16.875 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.audio.decode import SAMPLE_RATE
from daemon.speakers.embed import session

WINDOW = 10 * SAMPLE_RATE
FRAME = 270  # samples between output frames
FRAME_CENTRE = 495  # samples from a frame's start to the centre of its receptive field
LOCAL = 3
# powerset class -> which local speakers are active
POWERSET = np.array(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Window:
    start: int  # sample offset of the window in the file
    activity: npt.NDArray[np.float32]  # (frames, 3) 0/1 per local speaker


def frames_of(samples: int) -> int:
    n = (samples - 251) // 10 + 1
    for _ in range(2):
        n = n // 3 - 4
    return max(n // 3, 0)


class Segmentation:
    """Blocking: call from a worker thread."""

    def __init__(self, model: Path, threads: int = 1) -> None:
        self._session = session(model, threads)

    def window(self, chunk: npt.NDArray[np.float32], start: int, pad: bool = True) -> Window:
        """The window of up to 10 s that starts at sample `start` of the file (a shorter chunk is a short file:
        zero-padded to a whole window, the frames past its end dropped; `pad=False`: run on the chunk as it
        is, cheaper for a few seconds, as the live path's change detection does)."""
        real = chunk.size
        if real < WINDOW and pad:
            chunk = np.pad(chunk, (0, WINDOW - real))
        logp = self._session.run(None, {"waveform": chunk[None, None].astype(np.float32)})[0][0]
        active = POWERSET[np.asarray(logp).argmax(axis=-1)]
        return Window(start, active if real >= WINDOW else active[: frames_of(max(real, 251))])


def gather(chunk: npt.NDArray[np.float32], frames: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """The samples of a window's chosen frames (each frame's 270 samples around its receptive field's centre)."""
    idx = np.flatnonzero(frames)
    lo = idx * FRAME + FRAME_CENTRE - FRAME // 2
    parts = [chunk[a : a + FRAME] for a in lo]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
