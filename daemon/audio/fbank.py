"""FunASR's acoustic front end pieces, for models run on onnxruntime (FSMN-VAD, the onnx engine): Kaldi fbank
as FunASR's WavFrontend computes it (80 mels, 25/10 ms Hamming frames, no dither, on the int16 scale) with
kaldi-native-fbank, and the CMVN vectors of a model's am.mvn."""

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


@cache
def _options() -> Any:
    import kaldi_native_fbank as knf

    fb = knf.FbankOptions()
    fb.frame_opts.samp_freq = SAMPLE_RATE
    fb.frame_opts.dither = 0.0
    fb.frame_opts.window_type = "hamming"
    fb.frame_opts.frame_shift_ms = 10
    fb.frame_opts.frame_length_ms = 25
    fb.mel_opts.num_bins = MELS
    fb.energy_floor = 0.0
    return fb


def online_fbank() -> Any:
    """A fresh streaming extractor: `feed` audio, read `num_frames_ready` / `get_frame(i)`."""
    import kaldi_native_fbank as knf

    return knf.OnlineFbank(_options())


def feed(fbank: Any, audio: npt.NDArray[np.float32]) -> None:
    fbank.accept_waveform(SAMPLE_RATE, (audio.astype(np.float32) * 32768.0).tolist())


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
