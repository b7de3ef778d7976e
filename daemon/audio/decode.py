"""Any common audio or video file -> 16 kHz mono float32, streamed in blocks, with clear one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.errors import AudioDecodeError

SAMPLE_RATE = 16_000
AUDIO_EXTENSIONS = frozenset(
    [
        ".wav",
        ".wave",
        ".flac",
        ".mp3",
        ".m4a",
        ".aac",
        ".ogg",
        ".oga",
        ".opus",
        ".webm",
        ".mp4",
        ".m4v",
        ".mkv",
        ".mka",
        ".mov",
        ".wma",
        ".aiff",
        ".aif",
        ".amr",
        ".3gp",
    ]
)

Audio = npt.NDArray[np.float32]


def is_audio_path(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def iter_decode(path: str | os.PathLike[str], block_s: float = 30.0) -> Iterator[Audio]:
    """Yield 16 kHz mono float32 blocks of about `block_s` seconds; raise AudioDecodeError on bad input."""
    import av  # PyAV, a faster-whisper dependency: FFmpeg's decoders without a separate binary

    p = Path(path)
    if not p.exists():
        raise AudioDecodeError(f"{p}: no such file")
    if p.is_dir():
        raise AudioDecodeError(f"{p}: is a directory")
    if not os.access(p, os.R_OK):
        raise AudioDecodeError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{p}: empty file (0 bytes)")

    block = int(block_s * SAMPLE_RATE)
    pending: list[Audio] = []
    pending_n = 0
    total = 0
    try:
        with av.open(str(p), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{p}: contains no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or 0
            if rate and not 1000 <= rate <= 768_000:
                raise AudioDecodeError(f"{p}: unsupported sample rate {rate} Hz (1 kHz to 768 kHz)")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in _frames(container, stream, p):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    pending.append(arr)
                    pending_n += arr.size
                    if pending_n >= block:
                        joined = np.concatenate(pending)
                        total += joined.size
                        yield joined
                        pending, pending_n = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
    except AudioDecodeError:
        raise
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(f"{p}: not a readable audio or video file ({_ffmpeg_reason(exc)})") from None
    except (ValueError, MemoryError, OSError) as exc:
        raise AudioDecodeError(f"{p}: cannot decode: {exc}") from None
    if pending:
        joined = np.concatenate(pending)
        total += joined.size
        if joined.size:
            yield joined
    if total == 0:
        raise AudioDecodeError(f"{p}: contains no audio (0 samples decoded)")


def _frames(container: Any, stream: Any, p: Path) -> Iterator[Any]:
    """Decoded frames; a corrupt packet in the middle is skipped (as players do), not fatal."""
    import av

    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


def _ffmpeg_reason(exc: Exception) -> str:
    text = str(exc)
    # "[Errno 1094995529] Invalid data found when processing input: '/path'" -> the middle part
    if "]" in text:
        text = text.split("]", 1)[1]
    return text.split(":")[0].strip() or exc.__class__.__name__


def decode_file(path: str | os.PathLike[str]) -> Audio:
    """The whole file as one 16 kHz mono float32 array."""
    return np.concatenate(list(iter_decode(path)))
