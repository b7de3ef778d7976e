"""Batch transcription of files and folders.

decode (streamed) -> segmenter (the live path's VAD state machine) -> chunks of up to 30 s of speech (pauses
shortened to at most 1 s, timestamps mapped back) -> the engine in batches that span files -> text pipeline
-> store + outputs. One bad file does not stop the batch. Memory stays bounded: at most `batch_size` chunks
are held, whatever the length of the files.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.asr.engine import Audio, DecodeOptions, Engine, Segment, Transcript, join_texts
from daemon.audio.decode import SAMPLE_RATE, is_audio_path, iter_decode
from daemon.audio.segmenter import Utterance, segment_stream
from daemon.audio.vad import Vad
from daemon.errors import AsrboxError, AudioDecodeError
from daemon.output.formats import FileTranscript, TimedText
from daemon.settings import VadSettings
from daemon.store.db import Record, Store
from daemon.text.pipeline import TextPipeline

log = logging.getLogger(__name__)

CHUNK_MAX_S = 30.0
MAX_GAP_S = 1.0
MIN_AUDIO_S = 0.1


class InputError(AsrboxError):
    exit_code = 66  # EX_NOINPUT


def collect_inputs(paths: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to transcribe (folders walked recursively, audio/video extensions only) and per-path errors."""
    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            try:
                found = sorted(
                    f for f in p.rglob("*") if f.is_file() and is_audio_path(f) and not f.name.startswith(".")
                )
            except OSError as exc:
                errors.append((raw, f"cannot read folder: {exc.strerror}"))
                continue
            if not found:
                errors.append((raw, "folder contains no audio or video files"))
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            errors.append((raw, "no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, errors


def fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class Chunk:
    """Up to 30 s of speech cut from one file; `pieces` maps chunk time back to file time."""

    audio: Audio
    pieces: tuple[tuple[float, float, float], ...]  # (chunk_start_s, file_start_s, length_s)

    def to_file_time(self, t: float) -> float:
        for c0, f0, length in self.pieces:
            if t <= c0 + length:
                return round(f0 + max(0.0, t - c0), 2)
        c0, f0, length = self.pieces[-1]
        return round(f0 + length, 2)


def merge_utterances(utterances: Iterable[Utterance], max_s: float = CHUNK_MAX_S) -> Iterator[Chunk]:
    """Join consecutive utterances into chunks of at most `max_s`, pauses shortened to MAX_GAP_S."""
    parts: list[Audio] = []
    pieces: list[tuple[float, float, float]] = []
    length = 0  # samples in the chunk
    prev_end = 0
    max_n = int(max_s * SAMPLE_RATE)
    gap_n = int(MAX_GAP_S * SAMPLE_RATE)
    for u in utterances:
        gap = min(max(u.start - prev_end, 0), gap_n) if parts else 0
        if parts and length + gap + u.audio.size > max_n:
            yield Chunk(np.concatenate(parts), tuple(pieces))
            parts, pieces, length, gap = [], [], 0, 0
        if gap:
            parts.append(np.zeros(gap, dtype=np.float32))
            length += gap
        pieces.append((length / SAMPLE_RATE, u.start / SAMPLE_RATE, u.audio.size / SAMPLE_RATE))
        parts.append(u.audio)
        length += u.audio.size
        prev_end = u.end
    if parts:
        yield Chunk(np.concatenate(parts), tuple(pieces))


@dataclass
class _FileState:
    index: int
    path: Path
    record_id: str | None = None
    chunks: list[Chunk] = field(default_factory=list)
    results: dict[int, Transcript] = field(default_factory=dict)
    decoded: bool = False
    duration_s: float = 0.0
    error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    engine_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.error is not None or (self.decoded and len(self.results) == len(self.chunks))


@dataclass(frozen=True)
class Outcome:
    path: Path
    transcript: FileTranscript | None = None
    error: str | None = None
    reused: bool = False


class BatchTranscriber:
    def __init__(
        self,
        engine: Engine,
        vad_factory: Callable[[], Vad],
        vad_settings: VadSettings,
        text: TextPipeline,
        store: Store | None,
        batch_size: int,
        language: str | None = None,
        force: bool = False,
    ) -> None:
        self.engine = engine
        self.vad_factory = vad_factory
        self.vad_settings = vad_settings
        self.text = text
        self.store = store
        self.batch_size = batch_size
        self.language = language
        self.force = force

    def run(self, files: Sequence[Path]) -> Iterator[Outcome]:
        """Outcomes in input order, each as soon as its file is done."""
        pool: list[tuple[_FileState, int]] = []
        states: deque[_FileState] = deque()
        for index, path in enumerate(files):
            reused = self._reuse(path)
            if reused is not None:
                if not states:
                    yield reused
                    continue
                # keep order: finish what is in flight first
                self._flush(pool)
                yield from self._ready(states, force=True)
                yield reused
                continue
            st = _FileState(index, path)
            states.append(st)
            self._begin_record(st)
            try:
                vad = self.vad_factory()
                samples = 0

                def blocks(st: _FileState = st) -> Iterator[Audio]:
                    nonlocal samples
                    for b in iter_decode(st.path):
                        samples += b.size
                        yield b

                for chunk in merge_utterances(segment_stream(blocks(), vad, self.vad_settings)):
                    st.chunks.append(chunk)
                    pool.append((st, len(st.chunks) - 1))
                    if len(pool) >= self.batch_size:
                        self._flush(pool)
                        yield from self._ready(states)
                st.duration_s = samples / SAMPLE_RATE
                if st.duration_s < MIN_AUDIO_S:
                    raise AudioDecodeError(
                        f"{path}: audio too short ({st.duration_s:.3f} s); truncated or empty recording?"
                    )
                st.decoded = True
            except AsrboxError as exc:
                st.error = str(exc)
                pool[:] = [(s, i) for s, i in pool if s is not st]
            except MemoryError:
                st.error = f"{path}: too large to process in the available memory"
                pool[:] = [(s, i) for s, i in pool if s is not st]
            yield from self._ready(states)
        self._flush(pool)
        yield from self._ready(states, force=True)

    # ------------------------------------------------------------------ internals
    def _reuse(self, path: Path) -> Outcome | None:
        if self.store is None or self.force:
            return None
        try:
            rec = self.store.find_done(str(path.resolve()), fingerprint(path))
        except OSError:
            return None
        if rec is None:
            return None
        log.info("%s: already transcribed (record %s); reusing it (--force to redo)", path, rec.id[:8])
        return Outcome(path, transcript_from_record(rec, str(path)), reused=True)

    def _begin_record(self, st: _FileState) -> None:
        if self.store is None:
            return
        try:
            fp = fingerprint(st.path)
        except OSError:
            fp = None
        st.record_id = self.store.begin(
            "file", source=str(st.path.resolve()), fingerprint=fp, audio_path=str(st.path.resolve())
        )

    def _flush(self, pool: list[tuple[_FileState, int]]) -> None:
        if not pool:
            return
        batch = list(pool)
        pool.clear()
        t0 = time.perf_counter()
        results = self.engine.transcribe(
            [st.chunks[i].audio for st, i in batch],
            DecodeOptions(language=self.language, groups=tuple(st.index for st, _ in batch)),
        )
        share = (time.perf_counter() - t0) / len(batch)
        for (st, i), res in zip(batch, results, strict=True):
            st.results[i] = res
            st.engine_s += share

    def _ready(self, states: deque[_FileState], force: bool = False) -> Iterator[Outcome]:
        while states and (states[0].complete or force):
            st = states.popleft()
            yield self._finish(st)

    def _finish(self, st: _FileState) -> Outcome:
        if st.error is None and not st.complete:
            st.error = f"{st.path}: internal error: file not fully transcribed"
        if st.error is not None:
            if self.store is not None and st.record_id:
                self.store.fail(st.record_id, st.error)
            return Outcome(st.path, error=st.error)
        segments: list[TimedText] = []
        raw_segments: list[Segment] = []
        votes: dict[str, float] = {}
        for i, chunk in enumerate(st.chunks):
            res = st.results[i]
            votes[res.language] = votes.get(res.language, 0.0) + chunk.audio.size
            processed = self.text.apply(res)
            for raw, seg in zip(res.segments, processed.segments, strict=True):
                start, end = chunk.to_file_time(seg.start), chunk.to_file_time(seg.end)
                raw_segments.append(raw)
                if seg.text:
                    segments.append(TimedText(start, max(end, start), seg.text))
        language = max(votes.items(), key=lambda kv: kv[1])[0] if votes else (self.language or "")
        transcript = FileTranscript(
            file=str(st.path),
            duration_s=st.duration_s,
            language=language,
            text=join_texts([s.text for s in segments], language),
            raw_text=join_texts([s.text for s in raw_segments], language),
            segments=tuple(segments),
            engine=self.engine.info.as_dict(),
            processing_s=time.perf_counter() - st.started,
            record_id=st.record_id,
        )
        if self.store is not None and st.record_id:
            self.store.finish(
                st.record_id,
                language=language,
                raw_text=transcript.raw_text,
                text=transcript.text,
                segments=[{"start": s.start, "end": s.end, "text": s.text} for s in segments],
                engine={**self.engine.info.as_dict(), "processing_s": round(st.engine_s, 3)},
                processing_s=transcript.processing_s,
                duration_s=st.duration_s,
            )
        log.debug("%s: %s", st.path, transcript.text)
        return Outcome(st.path, transcript)


def transcript_from_record(rec: Record, file: str) -> FileTranscript:
    return FileTranscript(
        file=file,
        duration_s=rec.duration_s or 0.0,
        language=rec.language or "",
        text=rec.text or "",
        raw_text=rec.raw_text or "",
        segments=tuple(TimedText(s["start"], s["end"], s["text"]) for s in rec.segments),
        engine={k: v for k, v in rec.engine.items() if k != "processing_s"},
        processing_s=rec.processing_s or 0.0,
        record_id=rec.id,
    )


def output_path(root: Path, file: Path, fmt: str, common: Path | None) -> Path:
    """`root/<path relative to the common input folder>/<stem>.<fmt>`, so same-named files don't collide."""
    rel = file.resolve()
    if common is not None:
        try:
            rel = rel.relative_to(common)
        except ValueError:
            rel = Path(rel.name)
    else:
        rel = Path(rel.name)
    return root / rel.with_suffix(f".{fmt}")


def common_folder(files: Sequence[Path]) -> Path | None:
    if not files:
        return None
    try:
        return Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    except ValueError:
        return None
