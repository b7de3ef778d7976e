"""Any common audio or video file -> 16 kHz mono float32, streamed in blocks, with clear one-line errors."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.errors import AudioDecodeError
from daemon.transcript import Audio

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
            if stream.codec_context is None:  # e.g. a WAV whose format tag no decoder knows
                raise AudioDecodeError(f"{p}: {_unknown_codec(p)}")
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


def _unknown_codec(p: Path) -> str:
    layout = wav_layout(p)
    if layout is not None:
        return f"unsupported WAV format tag 0x{layout.format_tag:04X} (no decoder for it)"
    return "audio in a codec this build cannot decode"


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


# ---------------------------------------------------------------------------- WAV header vs. contents
TOLERANCE_S = 0.05  # less than this between header and contents is rounding, not a damaged file


@dataclass(frozen=True)
class WavLayout:
    """What a RIFF/WAVE header says, and what the file holds."""

    format_tag: int
    byte_rate: int
    declared: int | None  # data bytes the header declares; None: no data chunk, or "until the end" (0, 0xFFFFFFFF)
    present: int  # data bytes in the file: up to the end, or to the next well-formed chunk after the declared size


def wav_layout(path: str | os.PathLike[str]) -> WavLayout | None:
    """Parse a RIFF/WAVE file's chunk headers (no audio is read); None if it is not one or is unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            return _walk_chunks(fh, os.fstat(fh.fileno()).st_size)
    except OSError:
        return None


def _walk_chunks(fh: Any, size: int) -> WavLayout | None:
    pos, tag, byte_rate = 12, None, 0
    while pos + 8 <= size:
        fh.seek(pos)
        cid, n = struct.unpack("<4sI", fh.read(8))
        if cid == b"fmt " and n >= 16:
            tag, _, _, byte_rate = struct.unpack("<HHII", fh.read(12))
        elif cid == b"data":
            if tag is None:
                return None
            start = pos + 8
            if n in (0, 0xFFFFFFFF):
                return WavLayout(tag, byte_rate, None, size - start)
            end = start + n + (n & 1)
            present = n if end >= size or _chunks_follow(fh, end, size) else size - start
            return WavLayout(tag, byte_rate, n, min(present, size - start))
        pos += 8 + n + (n & 1)
    return WavLayout(tag, byte_rate, None, 0) if tag is not None else None


def _chunks_follow(fh: Any, pos: int, size: int) -> bool:
    """True if the bytes from `pos` to the end are well-formed RIFF chunks (metadata, not more audio)."""
    while pos + 8 <= size:
        fh.seek(pos)
        cid, n = struct.unpack("<4sI", fh.read(8))
        if not all(32 <= c < 127 for c in cid) or pos + 8 + n > size:
            return False
        pos += 8 + n + (n & 1)
    return size - pos < 8


def wav_mismatch(path: str | os.PathLike[str], decoded_samples: int) -> str | None:
    """One line when a WAV's header and its contents disagree (cut short, or more data than declared)."""
    layout = wav_layout(path)
    if layout is None or layout.declared is None or layout.byte_rate <= 0:
        return None
    declared_s = layout.declared / layout.byte_rate
    present_s = layout.present / layout.byte_rate
    read_s = decoded_samples / SAMPLE_RATE
    if present_s < declared_s - TOLERANCE_S:
        return f"read {read_s:.1f} s of a header-declared {declared_s:.1f} s (the file is cut short)"
    if present_s > declared_s + TOLERANCE_S:
        return (
            f"read {read_s:.1f} s, as the header declares, but the file holds {present_s:.1f} s of audio data; "
            "the rest was not read"
        )
    return None
