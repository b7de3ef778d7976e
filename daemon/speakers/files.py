"""Speakers for file transcriptions: diarize the file (streamed again from disk, so the transcriber's bounded
memory holds) and give every segment the label of the speaker who talks most within it.

A segment with word times (`TimedText.words`) whose words fall into the turns of two or more speakers is first
split where the speaker changes: each word takes the speaker who talks most during it, runs of words of one
speaker become parts, and a part too small to trust (one word, or under `MIN_PART_S`) joins its nearer
neighbour. Each part's text is its words joined (`join_words`) through the text pipeline (`text`)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.audio.decode import iter_decode
from daemon.output.formats import FileTranscript, TimedText
from daemon.settings import Settings
from daemon.speakers.cluster import Bounds, label
from daemon.speakers.diarize import Diarization, Diarizer
from daemon.speakers.models import load
from daemon.speakers.speech import Spans
from daemon.transcript import Word, join_words

if TYPE_CHECKING:
    from daemon.store.speakers import Voice

log = logging.getLogger(__name__)

MIN_PART_S = 0.5  # a run of words of one speaker shorter than this (first word start to last word end) is not split off
NEAR_S = 5.0  # the turns looked at for a segment's words: those within this of the segment


def _runs(words: Sequence[Word], speakers: Sequence[int]) -> list[tuple[int, list[Word]]]:
    """Consecutive words of one speaker as runs; tiny runs (one word, or under MIN_PART_S) merged, smallest
    first, into the neighbour nearer in time (the one before on a tie)."""
    runs: list[tuple[int, list[Word]]] = []
    for w, who in zip(words, speakers, strict=True):
        if runs and runs[-1][0] == who:
            runs[-1][1].append(w)
        else:
            runs.append((who, [w]))

    def span(run: tuple[int, list[Word]]) -> float:
        return run[1][-1].end - run[1][0].start

    while len(runs) > 1:
        tiny = [k for k, r in enumerate(runs) if len(r[1]) < 2 or span(r) < MIN_PART_S]
        if not tiny:
            break
        k = min(tiny, key=lambda i: span(runs[i]))
        before = runs[k][1][0].start - runs[k - 1][1][-1].end if k > 0 else float("inf")
        after = runs[k + 1][1][0].start - runs[k][1][-1].end if k + 1 < len(runs) else float("inf")
        into = k - 1 if before <= after else k + 1
        lo, hi = min(k, into), max(k, into)
        runs[lo : hi + 1] = [(runs[into][0], runs[lo][1] + runs[hi][1])]
        # the neighbours of the merged run may now share its speaker
        merged: list[tuple[int, list[Word]]] = []
        for r in runs:
            if merged and merged[-1][0] == r[0]:
                merged[-1] = (r[0], merged[-1][1] + r[1])
            else:
                merged.append(r)
        runs = merged
    return runs


def split_by_speaker(seg: TimedText, result: Diarization, text: Callable[[str], str]) -> list[TimedText]:
    """`seg` labelled, as one segment or, when its words change speaker, as one part per speaker run (module
    docstring). The parts keep the segment's outer edges; inside, they meet at their words' times."""
    who = result.speaker_at(seg.start, seg.end)
    whole = [dataclasses.replace(seg, speaker=label(who) if who is not None else None)]
    if who is None or len(seg.words) < 2:
        return whole
    near = result.near(seg.start - NEAR_S, seg.end + NEAR_S)
    local = dataclasses.replace(result, turns=near or result.turns)
    speakers = [local.speaker_at(w.start, w.end) for w in seg.words]
    runs = _runs(seg.words, [s if s is not None else who for s in speakers])
    if len(runs) < 2:
        return whole
    parts = []
    for k, (spk, words) in enumerate(runs):
        start = seg.start if k == 0 else min(max(words[0].start, seg.start), seg.end)
        end = seg.end if k == len(runs) - 1 else min(max(words[-1].end, start), seg.end)
        parts.append(TimedText(start, end, text(join_words(words)) or join_words(words), label(spk), tuple(words)))
    return parts


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
        if n is not None and (n < low or (max_speakers is not None and n > max_speakers)):
            raise ValueError(f"{n} is outside min_speakers..max_speakers")
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

    def label(
        self,
        path: Path,
        transcript: FileTranscript,
        speech: Spans | None = None,
        text: Callable[[str], str] | None = None,
    ) -> FileTranscript:
        """Labels on the transcript's segments, split where the speaker changes when they have word times;
        `speech`: where the transcriber's VAD heard speech; `text`: the text pipeline, for split parts."""
        t0 = time.perf_counter()
        result = self.diarize(path, speech)
        segments = [part for s in transcript.segments for part in split_by_speaker(s, result, text or str.strip)]
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
