"""Speakers for file transcriptions: diarize the file (streamed again from disk, so the transcriber's bounded
memory holds) and give every segment the label of the speaker who talks most within it."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.audio.decode import iter_decode
from daemon.output.formats import FileTranscript
from daemon.settings import Settings
from daemon.speakers.cluster import Bounds, label
from daemon.speakers.diarize import Diarization, Diarizer
from daemon.speakers.models import load
from daemon.speakers.speech import Spans

if TYPE_CHECKING:
    from daemon.store.speakers import Voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeakerRequest:
    """What a caller asked: `speakers` exactly N (None: estimate), within min..max."""

    speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int | None = None

    @staticmethod
    def parse(value: str | None, min_speakers: int | None = None, max_speakers: int | None = None) -> SpeakerRequest:
        """`--speakers N|auto` (+ min/max) -> a request; ValueError with one line when it makes no sense."""
        n = None
        if value not in (None, "", "auto"):
            try:
                n = int(str(value))
            except ValueError:
                raise ValueError(f"speakers must be a number or 'auto', not {value!r}") from None
            if not 1 <= n <= 50:
                raise ValueError("speakers must be between 1 and 50")
        low = min_speakers or 1
        if low < 1 or (max_speakers is not None and max_speakers < low):
            raise ValueError("need 1 <= min-speakers <= max-speakers")
        return SpeakerRequest(n, low, max_speakers)


class FileSpeakers:
    """Built once per transcriber (loads the two ONNX models); `label` is blocking."""

    def __init__(self, settings: Settings, request: SpeakerRequest, voices: Sequence[Voice] = ()) -> None:
        sp = settings.speakers
        self.voices = tuple(voices)  # enrolled voices: a speaker this similar to one is called by its name
        self.voice_threshold = sp.voice_threshold
        self.diarizer = Diarizer(load(sp.folder(settings.asr)), threads=sp.threads)
        self.max_speakers = sp.max_speakers  # the box's bound when a request gives none
        self.threshold = sp.threshold
        self.bounds = self._bounds(request)
        self.step_s = sp.step_s

    def _bounds(self, request: SpeakerRequest) -> Bounds:
        return Bounds(
            speakers=request.speakers,
            min_speakers=request.min_speakers,
            max_speakers=request.max_speakers or self.max_speakers,
            threshold=self.threshold,
        )

    def with_request(self, request: SpeakerRequest, voices: Sequence[Voice]) -> FileSpeakers:
        """A labeller for another request and voice list that shares this one's loaded models (onnxruntime
        sessions run from several threads); this one is unchanged."""
        mine = copy.copy(self)
        mine.bounds = self._bounds(request)
        mine.voices = tuple(voices)
        return mine

    def asked(self) -> dict[str, int | None]:
        """What this labeller was asked for (kept with a record: a later request for another count redoes it)."""
        b = self.bounds
        return {"speakers": b.speakers, "min_speakers": b.min_speakers, "max_speakers": b.max_speakers}

    def diarize(self, path: Path, speech: Spans | None = None) -> Diarization:
        return self.diarizer.run(iter_decode(path), self.bounds, self.step_s, speech)

    def label(self, path: Path, transcript: FileTranscript, speech: Spans | None = None) -> FileTranscript:
        """Labels on the transcript's segments; `speech`: where the transcriber's VAD heard speech."""
        t0 = time.perf_counter()
        result = self.diarize(path, speech)
        segments = []
        for s in transcript.segments:
            who = result.speaker_at(s.start, s.end)
            segments.append(dataclasses.replace(s, speaker=label(who) if who is not None else None))
        took = time.perf_counter() - t0
        log.info("%s: %d speaker(s) in %.1f s", path.name, result.speakers, took)
        meta = {
            **transcript.meta,
            "speakers": {"count": result.speakers, "seconds": round(took, 3), "asked": self.asked()},
        }
        names = {**self._voice_names(result), **transcript.speaker_names}
        return dataclasses.replace(transcript, segments=tuple(segments), meta=meta, speaker_names=names)

    def _voice_names(self, result: Diarization) -> dict[str, str]:
        """Enrolled voices found among the speakers (each voice names one speaker at most, the closest)."""
        pairs = sorted(
            ((float(v.embedding @ c), i, v.name) for i, c in enumerate(result.centroids) for v in self.voices),
            reverse=True,
        )
        named: dict[str, str] = {}
        for sim, i, name in pairs:
            if sim >= self.voice_threshold and label(i) not in named and name not in named.values():
                named[label(i)] = name
        return named
