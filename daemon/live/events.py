"""What the live threads hand to the core's event loop, and the jobs the loop hands to the ASR worker.

Threads never touch application state: they post one of these values to the loop (`Post`), which owns
everything that changes. All values are immutable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.audio.segmenter import Utterance
from daemon.transcript import Audio, DecodeOptions, Transcript


@dataclass(frozen=True)
class DecodeContext:
    """What recognition of an utterance depends on, as the loop saw it: options and hotword terms."""

    options: DecodeOptions
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """Audio for the ASR worker. `key` = (start, end of speech) stream offsets of the utterance: a speculative
    result is reused for the final when both agree (the final's audio only adds post-roll)."""

    key: tuple[int, int]
    audio: Audio = field(repr=False)
    utterance_id: str
    context: DecodeContext | None = None  # finals: the loop's context when persisted; else the worker's latest
    audio_path: Path | None = None  # finals whose audio is read back from the store (backlog, recovery)


# ---------------------------------------------------------------- listener (segmenter thread) -> loop
@dataclass(frozen=True)
class SpeechEdge:
    on: bool
    utterance_id: str
    start: int  # stream offset where the utterance's audio begins
    kept: bool = True  # off: False when the utterance was too short to keep (nothing will be transcribed)


@dataclass(frozen=True)
class UtteranceEnded:
    utterance_id: str
    utterance: Utterance


@dataclass(frozen=True)
class ListenerIdle:
    """The listener has closed the utterance in progress and stopped analysing (answer to `listen(False)`)."""

    token: int


@dataclass(frozen=True)
class SourceEnded:
    """A finite source ended and the last utterance was handed over."""


# ---------------------------------------------------------------- capture -> loop
@dataclass(frozen=True)
class SourceState:
    ok: bool
    reason: str | None


# ---------------------------------------------------------------- ASR worker -> loop
@dataclass(frozen=True)
class PartialText:
    utterance_id: str
    start: int
    text: str


@dataclass(frozen=True)
class FinalText:
    job: Job
    transcript: Transcript  # after the text pipeline
    raw_text: str
    processing_s: float
    speaker_embedding: npt.NDArray[np.float32] | None = field(default=None, repr=False)  # docs/speakers.md


@dataclass(frozen=True)
class FinalError:
    job: Job
    reason: str
    permanent: bool = False  # no retry can help (the audio is gone)
    unavailable: bool = False  # the ASR server was unreachable: not an attempt; the queue waits for it


Post = Callable[[object], None]
