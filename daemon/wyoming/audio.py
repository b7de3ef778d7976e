"""One request's audio: 16 kHz mono s16 as it arrives, bounded, written to a WAV for the file path."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

from daemon.wyoming.pcm import SAMPLE_RATE, FormatError, Pcm16, PcmConverter, parse_format

MAX_AUDIO_S = 300  # a voice command; more is refused (and the buffer is bounded by it)


class TooLong(Exception):
    pass


class RequestAudio:
    def __init__(self, fmt: tuple[int, int, int]) -> None:
        self.converter = PcmConverter(*fmt)
        self._parts: list[Pcm16] = []
        self.samples = 0

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> RequestAudio:
        return cls(parse_format(data))

    def add(self, data: dict[str, Any], payload: bytes | None) -> None:
        """An audio-chunk: its format must be the stream's (a client cannot switch formats mid-stream)."""
        fmt = parse_format(data)
        if fmt != self.converter.format:
            raise FormatError(f"audio format changed mid-stream from {self.converter.format} to {fmt}")
        self._append(self.converter.convert(payload or b""))

    def finish(self) -> None:
        self._append(self.converter.flush())

    def _append(self, pcm: Pcm16) -> None:
        if self.samples + pcm.size > MAX_AUDIO_S * SAMPLE_RATE:
            raise TooLong(f"audio longer than {MAX_AUDIO_S} s")
        if pcm.size:
            self._parts.append(pcm)
            self.samples += pcm.size

    def pcm(self) -> Pcm16:
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0] if self._parts else np.zeros(0, np.int16)

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE


def write_wav(path: Path, pcm: Pcm16) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())
