"""The Engine protocol, its result types, and `load_engine(settings)` (backends imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from daemon.errors import ConfigError
from daemon.settings import AsrSettings

Audio = npt.NDArray[np.float32]

# Languages written without spaces between words (segment texts are joined without a separator).
NO_SPACE_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "my", "bo", "km"})


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio given to the engine
    end: float
    text: str


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
    fallback: bool = True  # Whisper's temperature fallback on windows that fail its quality checks
    draft: bool = False  # cheaper, less accurate decoding for partial results
    short_first: bool = False  # try the draft window first, the full window only where it fails the checks
    language_hint: str | None = None  # the language recent speech was in (a prior, not a constraint)


class Engine(Protocol):
    info: EngineInfo

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        """Transcribe each 16 kHz mono chunk; the result list is in the same order."""
        ...

    def close(self) -> None: ...


def join_texts(texts: Sequence[str], language: str) -> str:
    sep = "" if language in NO_SPACE_LANGUAGES else " "
    return sep.join(t.strip() for t in texts if t.strip())


def load_engine(settings: AsrSettings) -> Engine:
    if settings.engine == "whisper":
        from daemon.asr.whisper import WhisperEngine

        return WhisperEngine(settings)
    if settings.engine == "funasr":
        from daemon.asr.funasr_engine import FunasrEngine

        return FunasrEngine(settings)
    if settings.engine == "onnx":
        from daemon.asr.onnx_engine import OnnxEngine

        return OnnxEngine(settings)
    raise ConfigError(f"config error: asr.engine: {settings.engine!r} is not available in this build yet")
