"""Client audio (any rate, 8-32 bit, any channel count) to 16 kHz mono s16, chunk by chunk."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 8

Pcm16 = npt.NDArray[np.int16]


class FormatError(ValueError):
    """An audio format we do not take (one line for the client)."""


def parse_format(data: dict[str, Any]) -> tuple[int, int, int]:
    """(rate, width, channels) of an audio-start/audio-chunk event, checked."""
    try:
        rate, width, channels = (data[k] for k in ("rate", "width", "channels"))
    except KeyError as exc:
        raise FormatError(f"audio event without {exc.args[0]}") from None
    for name, value in (("rate", rate), ("width", width), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise FormatError(f"audio {name} is not a whole number")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise FormatError(f"audio rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if width not in (1, 2, 3, 4):
        raise FormatError(f"audio width {width} bytes is not 1, 2, 3 or 4")
    if not 1 <= channels <= MAX_CHANNELS:
        raise FormatError(f"audio channels {channels} is outside 1-{MAX_CHANNELS}")
    return rate, width, channels


class PcmConverter:
    """Converts one stream; keeps a partial frame for the next chunk and the resampler's state."""

    def __init__(self, rate: int, width: int, channels: int) -> None:
        self.format = (rate, width, channels)
        self._frame_bytes = width * channels
        self._carry = b""
        self._resampler: Any = None
        if rate != SAMPLE_RATE:
            import av

            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def convert(self, data: bytes) -> Pcm16:
        data = self._carry + data
        usable = len(data) - len(data) % self._frame_bytes
        self._carry = data[usable:]
        mono = _to_mono16(data[:usable], *self.format[1:])
        return self._resample(mono) if mono.size else mono

    def flush(self) -> Pcm16:
        """What the resampler still holds (at the end of the stream)."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        return _frames(self._resampler.resample(None))

    def _resample(self, mono: Pcm16) -> Pcm16:
        if self._resampler is None:
            return mono
        import av

        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.format[0]
        return _frames(self._resampler.resample(frame))


def _frames(frames: list[Any]) -> Pcm16:
    parts = [f.to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)


def _to_mono16(raw: bytes, width: int, channels: int) -> Pcm16:
    """Little-endian PCM (8-bit unsigned as in WAV, 16/24/32-bit signed) to s16, channels averaged."""
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16  # sign from the top byte
    else:
        x = np.frombuffer(raw, "<i4").astype(np.int64) >> 16
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    out: Pcm16 = np.clip(x, -32768, 32767).astype(np.int16)
    return out
