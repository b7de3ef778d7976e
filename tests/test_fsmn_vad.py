"""FSMN-VAD streaming: bounded memory (fbank frames released once stacked) with unchanged probabilities."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from conftest import eval_clip

from daemon.audio.decode import decode_file
from daemon.audio.fbank import MELS, feed, online_fbank
from daemon.audio.fsmn_vad import LFR_M, SIL_CLASS, FsmnVad
from daemon.audio.vad import FRAME


def _unchanged_algorithm(vad: FsmnVad, frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """FsmnVad.probs as of 9bdef6e (every fbank frame kept, list.pop(0)), on the same ONNX session."""
    fbank = online_fbank()
    kept: list[npt.NDArray[np.float32]] = []
    taken, started, last = 0, False, 0.0
    state = [np.zeros([d if isinstance(d, int) else 1 for d in c.shape], np.float32) for c in vad._caches]
    out = np.empty(frames.shape[0], dtype=np.float32)
    for i, block in enumerate(frames):
        feed(fbank, block)
        while taken < fbank.num_frames_ready:
            frame = np.asarray(fbank.get_frame(taken), dtype=np.float32)
            if not started:
                kept += [frame] * ((LFR_M - 1) // 2)
                started = True
            kept.append(frame)
            taken += 1
        stacked = []
        while len(kept) >= LFR_M:
            stacked.append(np.concatenate(kept[:LFR_M]))
            kept.pop(0)
        if stacked:
            feats = (np.stack(stacked) + vad._shift) * vad._scale
            inputs = {"speech": feats[None, :, :].astype(np.float32)}
            inputs |= {c.name: s for c, s in zip(vad._caches, state, strict=True)}
            logits, *caches = vad._session.run(None, inputs)
            state = [np.asarray(c, dtype=np.float32) for c in caches]
            last = float(np.max(1.0 - np.asarray(logits)[0, :, SIL_CLASS]))
        out[i] = last
    return out


@pytest.fixture(scope="module")
def clip_frames() -> npt.NDArray[np.float32]:
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    audio = decode_file(wav)[: 60 * 16000]  # a minute of speech with pauses
    n = audio.size // FRAME
    return audio[: n * FRAME].reshape(n, FRAME)


def test_fsmn_probabilities_identical_to_the_unchanged_algorithm(clip_frames: npt.NDArray[np.float32]) -> None:
    vad = FsmnVad()
    want = _unchanged_algorithm(vad, clip_frames)
    # fed in uneven calls, as capture blocks arrive
    got = np.concatenate([vad.probs(clip_frames[i : i + n]) for i, n in _chunks(clip_frames.shape[0])])
    assert want.max() > 0.9 and want.min() < 0.1  # the clip has speech and pauses
    np.testing.assert_array_equal(got, want)
    vad.reset()  # and again after a reset, in one call
    np.testing.assert_array_equal(vad.probs(clip_frames), want)


def test_fsmn_releases_fbank_frames(clip_frames: npt.NDArray[np.float32]) -> None:
    vad = FsmnVad()
    vad.probs(clip_frames)
    taken = vad._taken
    assert taken > 5000  # ten ms frames of a minute
    with pytest.raises(RuntimeError, match="removed"):
        vad._fbank.get_frame(0)  # the extractor no longer holds the stream's frames
    assert len(vad._frames) < LFR_M
    assert vad._fbank.dim == MELS


def _chunks(total: int) -> list[tuple[int, int]]:
    out, i, sizes = [], 0, (1, 3, 7, 2, 31)
    while i < total:
        n = sizes[len(out) % len(sizes)]
        out.append((i, n))
        i += n
    return out
