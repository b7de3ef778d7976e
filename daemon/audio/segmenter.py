"""Streaming speech segmenter: VAD probabilities per frame -> utterances.

A pure state machine timed by sample counts (never the wall clock), shared by the live daemon and by
file transcription. Rules:
- speech starts on a frame with probability >= threshold; `pre_roll_ms` of audio before it is kept so the
  first syllable is not clipped;
- speech ends after `min_silence_ms` of frames below `threshold - 0.15` (hysteresis); `post_roll_ms` after the
  last voiced frame is kept;
- an utterance with less than `min_speech_ms` of voiced frames is dropped (counted, `SpeechDiscarded`);
- an utterance reaching `max_utterance_s` is split at its quietest stretch in the later half, and the rest
  continues as the next utterance (kept however little speech it holds: it is the end of real speech);
- `split_at` cuts the same way at a given offset (live: where another voice takes over, daemon/speakers/change.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from daemon.audio.decode import SAMPLE_RATE
from daemon.audio.vad import FrameSplitter, Vad
from daemon.settings import VadSettings
from daemon.transcript import Audio


@dataclass(frozen=True)
class Utterance:
    """A stretch of speech; `start`/`end` are sample offsets from the start of the stream."""

    start: int
    end: int
    audio: Audio = field(repr=False)
    last_voiced: int  # sample offset just after the last voiced frame (end of speech)
    split: bool = False  # cut while speech went on (max_utterance_s, a change of voice) rather than ended by silence

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechStarted:
    start: int  # sample offset where the utterance's audio begins (pre-roll included)


@dataclass(frozen=True)
class SpeechEnded:
    utterance: Utterance


@dataclass(frozen=True)
class SpeechDiscarded:
    """The utterance that started at `start` ended with less than `min_speech_ms` of speech (a cough, a click):
    dropped, counted, nothing to transcribe."""

    start: int


Event = SpeechStarted | SpeechEnded | SpeechDiscarded


class Segmenter:
    def __init__(self, settings: VadSettings, frame_samples: int = 512) -> None:
        self.frame = frame_samples
        ms = SAMPLE_RATE // 1000
        self.threshold = settings.threshold
        self.neg_threshold = max(settings.threshold - 0.15, 0.01)
        self.min_speech = settings.min_speech_ms * ms
        self.min_silence = settings.min_silence_ms * ms
        self.post_roll = settings.post_roll_ms * ms
        self.max_len = int(settings.max_utterance_s * SAMPLE_RATE)
        pre_frames = -(-settings.pre_roll_ms * ms // frame_samples)
        self._pre: deque[tuple[Audio, float]] = deque(maxlen=max(pre_frames, 0) or None)
        if pre_frames == 0:
            self._pre = deque(maxlen=1)
        self._pre_frames = pre_frames
        self.dropped_short = 0
        self._pos = 0  # samples consumed so far
        self._reset_utterance()

    def _reset_utterance(self) -> None:
        self._in_speech = False
        self._frames: list[Audio] = []
        self._probs: list[float] = []
        self._start = 0
        self._voiced = 0
        self._last_voiced = 0
        self._silence = 0
        self._continued = False  # the rest of an utterance cut at max_utterance_s: never too short to keep

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def position(self) -> int:
        return self._pos

    def current_audio(self) -> Audio:
        """The audio of the utterance in progress (for partial results)."""
        return np.concatenate(self._frames) if self._frames else np.zeros(0, dtype=np.float32)

    @property
    def current_start(self) -> int:
        return self._start

    @property
    def silence_samples(self) -> int:
        """Samples of silence since the last voiced frame of the utterance in progress."""
        return self._silence

    @property
    def last_voiced(self) -> int:
        return self._last_voiced

    def tentative_end(self) -> int:
        """Where the utterance in progress would end if speech does not resume."""
        return min(self._last_voiced + self.post_roll, self._pos)

    def push(self, frame: Audio, prob: float) -> list[Event]:
        """Feed one frame and its speech probability; return the events it caused."""
        events: list[Event] = []
        start_of_frame = self._pos
        self._pos += frame.size
        if not self._in_speech:
            if prob >= self.threshold:
                pre = list(self._pre) if self._pre_frames else []
                self._in_speech = True
                self._frames = [f for f, _ in pre] + [frame]
                self._probs = [p for _, p in pre] + [prob]
                self._start = start_of_frame - sum(f.size for f, _ in pre)
                self._voiced = frame.size
                self._last_voiced = self._pos
                self._silence = 0
                self._pre.clear()
                events.append(SpeechStarted(self._start))
            elif self._pre_frames:
                self._pre.append((frame, prob))
            return events

        self._frames.append(frame)
        self._probs.append(prob)
        if prob >= self.neg_threshold:
            self._voiced += frame.size if prob >= self.threshold else 0
            self._last_voiced = self._pos
            self._silence = 0
        else:
            self._silence += frame.size
        if self._silence >= self.min_silence:
            events.extend(self._finish(split=False))
        elif self._pos - self._start >= self.max_len:
            events.extend(self._split())
        return events

    def flush(self) -> list[Event]:
        """End of stream: close the utterance in progress."""
        return self._finish(split=False) if self._in_speech else []

    def jump(self, offset: int) -> list[Event]:
        """The stream continues at `offset` after a gap (idle time, dropped blocks, lost samples): the utterance
        in progress ends where its speech ended, and no audio from before the gap is carried across it."""
        events = self.flush()
        self._pre.clear()
        self._pos = max(self._pos, offset)
        return events

    def _finish(self, split: bool) -> list[Event]:
        audio = np.concatenate(self._frames)
        end = min(self._last_voiced + self.post_roll, self._pos)
        audio = audio[: end - self._start]
        keep = self._voiced >= self.min_speech or self._continued
        utt = Utterance(self._start, end, audio, self._last_voiced, split)
        # the silent frames after the last voiced one become the pre-roll of whatever follows
        trailing = self._silent_tail()
        self._reset_utterance()
        self._pre.clear()
        if self._pre_frames:
            self._pre.extend(trailing)
        if not keep:
            self.dropped_short += 1
            return [SpeechDiscarded(utt.start)]
        return [SpeechEnded(utt)]

    def _silent_tail(self) -> list[tuple[Audio, float]]:
        """The frames of the utterance in progress that start at or after its last voiced sample."""
        tail: list[tuple[Audio, float]] = []
        end = self._pos
        for frame, prob in zip(reversed(self._frames), reversed(self._probs), strict=True):
            end -= frame.size
            if end < self._last_voiced or len(tail) >= self._pre_frames:
                break
            tail.append((frame, prob))
        return tail[::-1]

    def split_at(self, offset: int) -> list[Event]:
        """Cut the utterance in progress at stream offset `offset` (rounded to a frame), where another voice
        takes over; what follows continues as the next utterance. Nothing happens outside the utterance."""
        if not self._in_speech:
            return []
        cut = round((offset - self._start) / self.frame)
        if cut < 1 or cut >= len(self._frames):
            return []
        return self._cut(cut)

    def _split(self) -> list[Event]:
        """Cut at the quietest stretch of the later half; the rest starts the next utterance."""
        probs = np.asarray(self._probs, dtype=np.float32)
        n = probs.size
        half = n // 2
        window = 5 if n > 10 else 1
        padded = np.pad(probs, window // 2, mode="edge")  # no zero padding: edges are not 'quiet'
        smooth = np.convolve(padded, np.ones(window) / window, mode="valid")
        cut = half + int(np.argmin(smooth[half:]))  # frame index where the next utterance begins
        return self._cut(max(1, min(cut, n - 1)))

    def _cut(self, cut: int) -> list[Event]:
        """End the utterance before frame `cut`; the frames from there on start the next one."""
        first = np.concatenate(self._frames[:cut])
        rest_frames, rest_probs = self._frames[cut:], self._probs[cut:]
        end = self._start + first.size
        utt = Utterance(self._start, end, first, min(self._last_voiced, end), split=True)
        self._frames, self._probs = rest_frames, rest_probs
        self._start = end
        self._last_voiced = max(self._last_voiced, end)
        self._voiced = sum(f.size for f, p in zip(rest_frames, rest_probs, strict=True) if p >= self.threshold)
        self._continued = True
        return [SpeechEnded(utt), SpeechStarted(end)]


def segment_stream(
    blocks: Iterable[Audio],
    vad: Vad,
    settings: VadSettings,
    pad_end: bool = True,
    watch: Callable[[Segmenter], list[Event]] | None = None,
) -> Iterator[Utterance]:
    """Offline use of the same segmenter: audio blocks in, utterances out (streaming, bounded memory). `watch`
    is asked after each frame, as the live segmenter thread asks it (a change of voice may cut there)."""
    seg = Segmenter(settings, vad.frame_samples)
    splitter = FrameSplitter(vad.frame_samples)

    def frames_in() -> Iterator[Audio]:
        for block in blocks:
            yield splitter.push(block)
        tail = splitter.tail() if pad_end else None
        if tail is not None:
            yield tail

    for frames in frames_in():
        if frames.size:
            for frame, prob in zip(frames, vad.probs(frames), strict=True):
                events = seg.push(frame, float(prob))
                for ev in events + (watch(seg) if watch is not None else []):
                    if isinstance(ev, SpeechEnded):
                        yield ev.utterance
    for ev in seg.flush():
        if isinstance(ev, SpeechEnded):
            yield ev.utterance
