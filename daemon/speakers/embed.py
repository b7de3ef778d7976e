"""Speaker embeddings on onnxruntime: 80-bin Kaldi fbank (kaldi-native-fbank, povey window, no dither), the
utterance mean removed, CAM++ -> 192 numbers, returned L2-normalised (cosine similarity = dot product)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.audio.decode import SAMPLE_RATE
from daemon.audio.fbank import features
from daemon.errors import ModelError

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]
MIN_SAMPLES = int(0.4 * SAMPLE_RATE)  # shorter speech gives no useful embedding
MAX_SAMPLES = 20 * SAMPLE_RATE  # longer audio adds cost, not identity: the middle 20 s are used
SIZE = 192


def fbank(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(frames, 80) log-mel features (povey window, [-1, 1] scale) with the utterance mean removed."""
    feats = features(audio, window="povey", scale=1.0)
    if feats.shape[0] == 0:
        return feats
    out: npt.NDArray[np.float32] = feats - feats.mean(axis=0, keepdims=True)
    return out


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own types (InvalidProtobuf...): a damaged or partial copy
        raise ModelError(f"{path.name} cannot be loaded ({type(exc).__name__}): asrbox models verify") from None


def normalise(v: npt.NDArray[Any]) -> Vector:
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else np.zeros(SIZE, np.float32)


class Embedder:
    """CAM++ on onnxruntime. `embed` is blocking: call it from a worker thread."""

    def __init__(self, model: Path, threads: int = 1) -> None:
        self._session = session(model, threads)

    def embed(self, audio: npt.NDArray[np.float32]) -> Vector | None:
        """The unit-length embedding of `audio` (16 kHz mono), or None when it is too short to tell."""
        if audio.size < MIN_SAMPLES:
            return None
        if audio.size > MAX_SAMPLES:
            start = (audio.size - MAX_SAMPLES) // 2
            audio = audio[start : start + MAX_SAMPLES]
        feats = fbank(audio)
        if feats.shape[0] < 20 or float(np.abs(audio).max()) < 1e-4:
            return None
        out = self._session.run(None, {"feats": feats[None]})[0]
        return normalise(np.asarray(out[0], dtype=np.float32))
