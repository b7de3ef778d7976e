"""Utterance audio on disk: 16-bit mono WAV files in date folders, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import os
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.audio.decode import SAMPLE_RATE


def audio_relpath(record_id: str, when: datetime) -> str:
    return f"audio/{when:%Y/%m/%d}/{record_id}.wav"


def write_wav_atomic(path: Path, audio: npt.NDArray[np.float32], rate: int = SAMPLE_RATE) -> int:
    """No half-written file is ever visible under `path`: a crash leaves only a `.part` file, removed later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    try:
        with tmp.open("wb") as fh:
            with wave.open(fh, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(pcm.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path.stat().st_size


def fsync_dir(folder: Path) -> bool:
    """Make the creations, renames and deletions of names in `folder` durable; False if the system refused."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def read_wav(path: Path) -> npt.NDArray[np.float32]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: not a 16-bit mono WAV")
        data = w.readframes(w.getnframes())
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def remove_partials(root: Path) -> int:
    """Delete `.part` files left by a crash mid-write; returns how many."""
    n = 0
    audio = root / "audio"
    if audio.is_dir():
        for p in audio.rglob("*.part"):
            p.unlink(missing_ok=True)
            n += 1
    return n
