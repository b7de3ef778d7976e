"""Voice activity detection models. The Vad protocol: fixed-size frames in, one speech probability each out.

SileroVad runs the Silero VAD v6 ONNX model that ships inside the faster-whisper wheel, on onnxruntime
(no torch). It is streaming: the LSTM state and the 64-sample context carry from one call to the next, so
the live path and the file path compute the same probabilities for the same audio.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

from daemon.errors import ModelError

FRAME = 512  # samples at 16 kHz = 32 ms
_CONTEXT = 64


class Vad(Protocol):
    frame_samples: int

    def probs(self, frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Speech probability per frame for a (n, frame_samples) array, continuing the stream."""
        ...

    def reset(self) -> None: ...


class FrameSplitter:
    """Cuts a stream of audio blocks of any size into whole VAD frames; the remainder waits for the next block."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self.pending = np.zeros(0, dtype=np.float32)

    def push(self, block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The whole frames now available, as an (n, frame_samples) array (n may be 0)."""
        data = np.concatenate([self.pending, block]) if self.pending.size else block
        n = data.size // self.frame_samples * self.frame_samples
        self.pending = data[n:]
        return data[:n].reshape(-1, self.frame_samples)

    def tail(self) -> npt.NDArray[np.float32] | None:
        """End of stream: the remainder zero-padded to one frame, shaped (1, frame_samples); None if empty."""
        if not self.pending.size:
            return None
        frame = np.zeros((1, self.frame_samples), dtype=np.float32)
        frame[0, : self.pending.size] = self.pending
        self.pending = np.zeros(0, dtype=np.float32)
        return frame

    def reset(self) -> None:
        self.pending = np.zeros(0, dtype=np.float32)


def silero_model_path() -> Path:
    try:
        ref = resources.files("faster_whisper") / "assets" / "silero_vad_v6.onnx"
    except ModuleNotFoundError:
        raise ModelError("Silero VAD needs the faster-whisper package (it ships the model)") from None
    path = Path(str(ref))
    if not path.is_file():
        raise ModelError(f"Silero VAD model missing: {path}")
    return path


class SileroVad:
    frame_samples = FRAME

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(path or silero_model_path()), providers=["CPUExecutionProvider"], sess_options=opts
        )
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def probs(self, frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if frames.ndim != 2 or frames.shape[1] != FRAME:
            raise ValueError(f"expected (n, {FRAME}) frames, got {frames.shape}")
        n = frames.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = frames.astype(np.float32, copy=False)
        contexts = np.empty((n, _CONTEXT), dtype=np.float32)
        contexts[0] = self._context
        if n > 1:
            contexts[1:] = frames[:-1, -_CONTEXT:]
        batch = np.concatenate([contexts, frames], axis=1)
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -_CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


# The VAD registry: name -> "module:Class" (a class taking no arguments), imported when first loaded.
VADS: dict[str, str] = {
    "silero": "daemon.audio.vad:SileroVad",
    "fsmn": "daemon.audio.fsmn_vad:FsmnVad",
}


def load_vad(kind: str = "silero") -> Vad:
    target = VADS.get(kind)
    if target is None:
        raise ModelError(f"unknown VAD {kind!r}")
    module, _, name = target.partition(":")
    return cast(Vad, getattr(importlib.import_module(module), name)())
