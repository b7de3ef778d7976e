"""Value types shared by the engines, the text pipeline, the store and the outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.lang import NO_SPACE_LANGUAGES

Audio = npt.NDArray[np.float32]  # 16 kHz mono samples


@dataclass(frozen=True)
class Word:
    """One word's time (`DecodeOptions.words`). `text` is spelled as the engine wrote it, with the space before
    it where the language puts one (" hello", but "你" in Chinese): the words of a segment joined with no
    separator give its text (`join_words`). For Chinese or Japanese a "word" is what Whisper's tokens give: a
    character or a few."""

    start: float  # seconds, in the same time as its segment
    end: float
    text: str


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio given to the engine
    end: float
    text: str
    words: tuple[Word, ...] = ()  # only when asked for (`DecodeOptions.words`) and the engine gives them


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_prob: float
    segments: tuple[Segment, ...]
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineInfo:
    name: str
    model: str
    device: str
    compute_type: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "model": self.model,
            "device": self.device,
            "compute_type": self.compute_type,
        }


@dataclass(frozen=True)
class DecodeOptions:
    language: str | None = None  # None = detect
    hotwords: tuple[str, ...] = ()
    # Chunks with the same group id (e.g. one file) share one detected language when they are decoded
    # in the same batch; None = each chunk on its own (live utterances).
    groups: tuple[int, ...] | None = None
    beam_size: int | None = None  # None = the engine's setting; 1 = greedy (partial results)
    fallback: bool = True  # decode again the windows that fail Whisper's quality checks (deterministic)
    draft: bool = False  # cheaper, less accurate decoding for partial results
    short_first: bool = False  # try the draft window first, the full window only where it fails the checks
    language_hint: str | None = None  # the language recent speech was in (a prior, not a constraint)
    words: bool = False  # word times on the segments (Whisper only; other engines leave `Segment.words` empty)


def join_texts(texts: Sequence[str], language: str) -> str:
    sep = "" if language in NO_SPACE_LANGUAGES else " "
    return sep.join(t.strip() for t in texts if t.strip())


def join_words(words: Sequence[Word]) -> str:
    """The text of a run of words: each carries its own leading space where the language has one."""
    return "".join(w.text for w in words).strip()
