"""The Kaldi fbank front end of the models run on onnxruntime, with kaldi-native-fbank: 80 mels, 25/10 ms
frames, no dither. FunASR's WavFrontend (FSMN-VAD, the onnx engine) uses Hamming windows on the int16 scale and
the CMVN vectors of the model's am.mvn; CAM++ (speaker embeddings) uses Kaldi's povey window on the [-1, 1]
scale."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.audio.decode import SAMPLE_RATE
from daemon.errors import ModelError

MELS = 80


INT16_SCALE = 32768.0  # FunASR's front end works on int16 sample values


@cache
def options(window: str = "hamming") -> Any:
    """Fbank options (shared, do not modify): `window` is "hamming" (FunASR) or "povey" (Kaldi's, CAM++)."""
    import kaldi_native_fbank as knf

    fb = knf.FbankOptions()
    fb.frame_opts.samp_freq = SAMPLE_RATE
    fb.frame_opts.dither = 0.0
    fb.frame_opts.window_type = window
    fb.frame_opts.frame_shift_ms = 10
    fb.frame_opts.frame_length_ms = 25
    fb.mel_opts.num_bins = MELS
    fb.energy_floor = 0.0
    return fb


def online_fbank(window: str = "hamming") -> Any:
    """A fresh streaming extractor: `feed` audio, read `num_frames_ready` / `get_frame(i)`."""
    import kaldi_native_fbank as knf

    return knf.OnlineFbank(options(window))


def feed(fbank: Any, audio: npt.NDArray[np.float32], scale: float = INT16_SCALE) -> None:
    fbank.accept_waveform(SAMPLE_RATE, (audio.astype(np.float32) * scale).tolist())


def features(
    audio: npt.NDArray[np.float32], window: str = "hamming", scale: float = INT16_SCALE
) -> npt.NDArray[np.float32]:
    """(frames, MELS) log-mel features of a whole clip; (0, MELS) when it is shorter than one frame."""
    fbank = online_fbank(window)
    feed(fbank, audio, scale)
    fbank.input_finished()
    n = fbank.num_frames_ready
    if n == 0:
        return np.zeros((0, MELS), dtype=np.float32)
    return np.stack([np.asarray(fbank.get_frame(i), dtype=np.float32) for i in range(n)])


def read_cmvn(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(shift, scale) from a Kaldi nnet am.mvn: <AddShift> then <Rescale>, each `[ v1 v2 ... ]`."""
    text = path.read_text(encoding="utf-8")
    vectors = []
    for tag in ("<AddShift>", "<Rescale>"):
        m = re.search(re.escape(tag) + r"[^\[]*\[([^\]]*)\]", text)
        if not m:
            raise ModelError(f"{path}: no {tag} vector")
        vectors.append(np.array(m.group(1).split(), dtype=np.float32))
    return vectors[0], vectors[1]
