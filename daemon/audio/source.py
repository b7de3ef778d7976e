"""Audio sources: the AudioSource protocol, a microphone through PortAudio (pyaudio), and a file played as a
microphone at real speed (or N times faster). Every source yields 16 kHz mono float32 blocks stamped with their
sample offset in the stream (`Block`), and maps an offset to the wall-clock time at which that sample was heard:
the one place where wall-clock times come from. Samples a source loses (a microphone overflow, a device that
vanished for a while) leave a gap in the offsets, so later times stay true.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from daemon.audio.block import Block
from daemon.audio.decode import SAMPLE_RATE, iter_decode
from daemon.errors import AsrboxError
from daemon.transcript import Audio

log = logging.getLogger(__name__)

BLOCK_S = 0.1
MAX_AHEAD_S = 0.5
GAP_AFTER_S = 0.25  # a microphone this far behind the clock has lost samples: the offset jumps (a gap)
DRIFT_STEP_S = 0.001  # per read, the stream clock follows the device by at most this much (sound-card drift)


def wall_clock(mono_at: float) -> float:
    """Epoch seconds of a past monotonic instant, read now: a clock step (NTP on a box without an RTC) after
    the stream began does not shift the times of later speech."""
    return time.time() - (time.monotonic() - mono_at)


class SourceError(AsrboxError):
    """The source failed (device vanished, read error); the capture loop reopens it with backoff."""


class NoMicrophoneError(AsrboxError):
    exit_code = 69  # EX_UNAVAILABLE


class AudioSource(Protocol):
    name: str

    def open(self) -> None: ...

    def read(self) -> Block | None:
        """The next block (about 100 ms) with its stream offset; None at the end of a finite source.
        Raises SourceError."""
        ...

    def wall_time(self, sample: int) -> float:
        """Epoch seconds at which stream sample `sample` (an offset) was heard."""
        ...

    def close(self) -> None: ...


class FileSource:
    """A recording played as a microphone, paced by sample count against the monotonic clock.

    The file is decoded as it plays (bounded memory, whatever its length); `loops` plays it several times
    (soak tests)."""

    def __init__(self, path: Path, speed: float = 1.0, block_s: float = BLOCK_S, loops: int = 1) -> None:
        if speed <= 0:
            raise AsrboxError("--speed must be greater than 0")
        self.path = path
        self.speed = speed
        self.loops = loops
        self.name = f"file:{path.name}"
        self._block = int(block_s * SAMPLE_RATE)
        self._blocks: Iterator[Audio] | None = None
        self._buf = np.zeros(0, dtype=np.float32)
        self._pos = 0
        self._t0 = 0.0

    def _stream(self) -> Iterator[Audio]:
        for _ in range(self.loops):
            yield from iter_decode(self.path, block_s=10.0)

    def open(self) -> None:
        if self._blocks is None:
            self._blocks = self._stream()
            first = next(self._blocks)  # fail now, in one line, if the file is not audio
            self._buf = first
            log.info("playing %s as the microphone at %gx", self.path, self.speed)
        self._t0 = time.monotonic() - self._pos / (SAMPLE_RATE * self.speed)

    def read(self) -> Block | None:
        assert self._blocks is not None, "open() first"
        while self._buf.size < self._block:
            nxt = next(self._blocks, None)
            if nxt is None:
                break
            self._buf = np.concatenate([self._buf, nxt])
        if self._buf.size == 0:
            return None
        pcm, self._buf = self._buf[: self._block], self._buf[self._block :]
        block = Block(self._pos, pcm)
        self._pos += pcm.size
        due = self._t0 + self._pos / (SAMPLE_RATE * self.speed)
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return block

    def wall_time(self, sample: int) -> float:
        return wall_clock(self._t0 + sample / (SAMPLE_RATE * self.speed))

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate: int
    is_default: bool


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """PortAudio/ALSA print probing noise on the C stderr; keep the user's terminal clean."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:  # pragma: no cover - installed by setup
        raise NoMicrophoneError(f"microphone support needs pyaudio ({exc}); or use --source FILE") from None
    with _quiet_stderr():
        return pyaudio.PyAudio()


def list_input_devices(pa: Any | None = None) -> list[InputDevice]:
    own = pa is None
    pa = pa or _pyaudio()
    try:
        try:
            default = int(pa.get_default_input_device_info()["index"])
        except OSError:
            default = -1
        out = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) > 0:
                out.append(
                    InputDevice(
                        i,
                        str(info["name"]),
                        int(info["maxInputChannels"]),
                        int(info.get("defaultSampleRate", 0)),
                        i == default,
                    )
                )
        return out
    finally:
        if own:
            pa.terminate()


def pick_device(devices: list[InputDevice], spec: str) -> InputDevice:
    """By index, exact name, then case-insensitive substring; empty = the default input."""
    hint = "run `asrbox devices` to list them, or play a recording with --source FILE"
    if not devices:
        raise NoMicrophoneError(f"no microphone found (no audio input device); {hint}")
    spec = spec.strip()
    if not spec:
        return next((d for d in devices if d.is_default), devices[0])
    if re.fullmatch(r"\d+", spec):
        for d in devices:
            if d.index == int(spec):
                return d
        raise NoMicrophoneError(f"audio.device: no input device with index {spec}; {hint}")
    for d in devices:
        if d.name == spec:
            return d
    matches = [d for d in devices if spec.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(repr(d.name) for d in matches)
        raise NoMicrophoneError(f"audio.device: {spec!r} matches several inputs ({names}); be more precise")
    raise NoMicrophoneError(f"audio.device: no input device matches {spec!r}; {hint}")


class MicrophoneSource:
    """PortAudio capture at 16 kHz mono, or at the device's own rate/channels resampled to 16 kHz mono."""

    def __init__(self, device: str = "", block_s: float = BLOCK_S) -> None:
        self.spec = device
        self.name = "microphone"
        self._block_s = block_s
        self._pa: Any = None
        self._stream: Any = None
        self._resampler: Any = None
        self._rate = SAMPLE_RATE
        self._channels = 1
        self._mono0 = 0.0
        self._samples = 0

    def open(self) -> None:
        import pyaudio

        self.close()
        self._pa = _pyaudio()
        try:
            dev = pick_device(list_input_devices(self._pa), self.spec)
            self.name = f"mic:{dev.name}"
            rate, channels = self._format(dev)
            frames = int(self._block_s * rate)
            with _quiet_stderr():
                self._stream = self._pa.open(
                    format=pyaudio.paInt16,
                    channels=channels,
                    rate=rate,
                    input=True,
                    input_device_index=dev.index,
                    frames_per_buffer=frames,
                )
        except NoMicrophoneError:
            self.close()
            raise
        except (OSError, ValueError) as exc:
            self.close()
            raise SourceError(f"cannot open the microphone: {exc}") from None
        self._rate, self._channels, self._frames = rate, channels, frames
        self._resampler = None
        if rate != SAMPLE_RATE or channels != 1:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        log.info("microphone %r open at %d Hz, %d channel(s)", dev.name, rate, channels)
        if not self._mono0:  # the stream's clock starts at the first open and runs on through reopens
            self._mono0 = time.monotonic()
        self._samples = max(self._samples, self._clock_samples())  # the time the device was away is a gap

    def _clock_samples(self) -> int:
        return int((time.monotonic() - self._mono0) * SAMPLE_RATE)

    def _format(self, dev: InputDevice) -> tuple[int, int]:
        import pyaudio

        for rate, ch in (
            (SAMPLE_RATE, 1),
            (dev.default_rate, 1),
            (dev.default_rate, min(dev.channels, 2)),
            (48_000, 2),
            (44_100, 2),
        ):
            if not rate or ch < 1:
                continue
            try:
                if self._pa.is_format_supported(
                    rate, input_device=dev.index, input_channels=ch, input_format=pyaudio.paInt16
                ):
                    return rate, ch
            except ValueError:
                continue
        raise SourceError(f"microphone {dev.name!r} offers no usable 16-bit format")

    def read(self) -> Block | None:
        if self._stream is None:
            raise SourceError("microphone is not open")
        try:
            data = self._stream.read(self._frames, exception_on_overflow=False)
        except (OSError, ValueError) as exc:
            raise SourceError(f"microphone read failed: {exc}") from None
        pcm = np.frombuffer(data, dtype="<i2")
        if self._resampler is None:
            out = pcm.astype(np.float32) / 32768.0
        else:
            import av

            frame = av.AudioFrame.from_ndarray(
                pcm.reshape(1, -1), format="s16", layout="mono" if self._channels == 1 else "stereo"
            )
            frame.sample_rate = self._rate
            parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
            out = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        block = Block(self._offset(out.size), out)
        self._samples = block.end
        # A real microphone cannot run ahead of the clock; a device that dumps a buffer or a file
        # (ALSA `file` pcm, virtual devices) can. Hold it to real time so nothing overflows downstream.
        ahead = self._samples / SAMPLE_RATE - (time.monotonic() - self._mono0) - MAX_AHEAD_S
        if ahead > 0:
            time.sleep(ahead)
        return block

    def _offset(self, size: int) -> int:
        """The offset of a block just read: next in line, unless the device lost samples (an overflow while we
        were slow): then the block is the newest audio, and the samples before it are a gap."""
        try:
            waiting = int(self._stream.get_read_available() * SAMPLE_RATE / self._rate)
        except (OSError, ValueError, AttributeError):
            waiting = 0
        lost = self._clock_samples() - waiting - (self._samples + size)
        if lost > GAP_AFTER_S * SAMPLE_RATE:
            log.warning("microphone overflow: %.2f s of audio lost (a gap in the stream)", lost / SAMPLE_RATE)
            return self._samples + lost
        # a sound card's clock drifts from the host's (0.1 % is common): the stream clock follows the device
        # slowly, so drift never accumulates into a false gap, while a real loss (sudden) still shows as one
        self._mono0 += max(-DRIFT_STEP_S, min(DRIFT_STEP_S, lost / SAMPLE_RATE))
        return self._samples

    def wall_time(self, sample: int) -> float:
        return wall_clock(self._mono0 + sample / SAMPLE_RATE)

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.stop_stream()
                self._stream.close()
            self._stream = None
        if self._pa is not None:
            with contextlib.suppress(Exception):
                self._pa.terminate()
            self._pa = None


def make_source(source: str, device: str, speed: float, loops: int = 1) -> AudioSource:
    if source:
        path = Path(source)
        if not path.is_file():
            raise AsrboxError(f"--source: no such file: {source}")
        next(iter_decode(path, block_s=1.0))  # not audio: one clear line now, not a retry loop later
        return FileSource(path, speed, loops=loops)
    return MicrophoneSource(device)


def check_microphone(device: str) -> InputDevice:
    """Fail early, in one line, when there is no usable microphone."""
    return pick_device(list_input_devices(), device)
