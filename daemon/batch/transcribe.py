"""Batch transcription of files and folders.

decode (streamed) -> segmenter (the live path's VAD state machine) -> chunks of up to 30 s of speech (pauses
shortened to at most 1 s, timestamps mapped back) -> the engine in batches that span files -> text pipeline
-> store + outputs. One bad file does not stop the batch: whatever fails for a file (decoder, VAD, engine, text
pipeline) fails that file's record with the reason. Memory stays bounded whatever the length of the files: audio
is held for at most `batch_size` chunks waiting for the engine (plus the segmenter's buffer); a decoded chunk
keeps only its place in the file and its transcript.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.asr.engine import Engine
from daemon.audio.decode import SAMPLE_RATE, is_audio_path, iter_decode, wav_mismatch
from daemon.audio.segmenter import Event, Segmenter, SpeechEnded, SpeechStarted
from daemon.audio.vad import FRAME, FrameSplitter, Vad
from daemon.errors import AsrboxError, AudioDecodeError
from daemon.output.formats import FileTranscript, TimedText, printable
from daemon.settings import VadSettings
from daemon.speakers.speech import merge, voiced_spans
from daemon.store.db import Record, Store
from daemon.store.records import save_file
from daemon.text.pipeline import TextPipeline
from daemon.transcript import Audio, DecodeOptions, Segment, Transcript, Word, join_texts

if TYPE_CHECKING:
    from daemon.speakers.files import FileSpeakers

log = logging.getLogger(__name__)

CHUNK_MAX_S = 30.0
MIN_CHUNK_S = 5.0
MIN_TAIL_S = 1.0
MIN_TAIL_SPEECH_S = 0.5
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
    """Up to 30 s of a file's audio, cut at a pause; `offset_s` is where it starts in the file."""

    audio: Audio
    offset_s: float
    voiced: tuple[bool, ...] = ()  # per VAD frame: speech heard

    def to_file_time(self, t: float) -> float:
        return round(self.offset_s + t, 2)

    def continuation(self, t: float) -> Chunk | None:
        """The rest of the chunk after `t` s when the VAD heard speech there that the decoder skipped.

        Whisper sometimes stops before the end of a window; its own long-form loop then decodes again from
        the last timestamp. This is the same second chance, in batch.
        """
        start = int(t * SAMPLE_RATE)
        if self.audio.size - start < int(MIN_TAIL_S * SAMPLE_RATE):
            return None
        first = (start + int(0.2 * SAMPLE_RATE)) // FRAME
        if sum(self.voiced[first:]) * FRAME < MIN_TAIL_SPEECH_S * SAMPLE_RATE:
            return None  # a breath or an echo, not a skipped sentence
        return Chunk(self.audio[start:].copy(), self.offset_s + start / SAMPLE_RATE, self.voiced[start // FRAME :])


def chunk_stream(
    blocks: Iterable[Audio], vad: Vad, settings: VadSettings, max_s: float = CHUNK_MAX_S
) -> Generator[Chunk, None, None]:
    """Cut a stream into chunks of at most `max_s` at pauses found by the live path's segmenter.

    All audio is kept (a word the VAD misses is still transcribed); a chunk in which the VAD heard no
    speech at all is skipped, so long silences cost nothing.
    """
    fs = vad.frame_samples
    seg = Segmenter(settings, fs)
    max_n = int(max_s * SAMPLE_RATE)
    min_n = int(MIN_CHUNK_S * SAMPLE_RATE)
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # stream offset of buf[0]
    probs: list[float] = []  # one per frame from buf_start on
    bounds: list[int] = []  # stream offsets of pauses: middle of each gap between utterances
    last_end: int | None = None
    splitter = FrameSplitter(fs)

    def take(cut: int) -> Chunk | None:
        nonlocal buf, buf_start, probs
        n = cut - buf_start
        frames_n = -(-n // fs)
        flags = tuple(p >= settings.threshold for p in probs[:frames_n])
        chunk = Chunk(buf[:n].copy(), buf_start / SAMPLE_RATE, flags) if any(flags) and n > 0 else None
        buf, buf_start = buf[n:], cut
        probs = probs[n // fs :]
        return chunk

    def on_events(events: list[Event]) -> None:
        nonlocal last_end
        for ev in events:
            if isinstance(ev, SpeechStarted):
                if last_end is not None:
                    bounds.append((last_end + max(ev.start, last_end)) // 2)
                last_end = None
            elif isinstance(ev, SpeechEnded):
                last_end = ev.utterance.end

    for block in blocks:
        frames = splitter.push(block)
        if frames.size:
            for frame, prob in zip(frames, vad.probs(frames), strict=True):
                probs.append(float(prob))
                on_events(seg.push(frame, float(prob)))
            buf = np.concatenate([buf, frames.reshape(-1)])
        while buf.size >= max_n:
            if last_end is not None and not seg.in_speech:
                # in a pause now: its middle so far is a candidate too
                bounds.append((last_end + seg.position) // 2)
            if (chunk := take(_cut_point(bounds, buf_start + min_n, buf_start + max_n, fs))) is not None:
                yield chunk
    rest, tail = splitter.pending, splitter.tail()
    if tail is not None:
        buf = np.concatenate([buf, rest])  # the real samples only, not the padding
        probs.append(float(vad.probs(tail)[0]))
    if buf.size and (chunk := take(buf_start + buf.size)) is not None:
        yield chunk


def _cut_point(bounds: list[int], lo: int, hi: int, fs: int) -> int:
    """The latest pause between stream offsets `lo` and `hi` (on a frame boundary), else `hi`; the pauses up to
    the cut are used up."""
    options = [b for b in bounds if lo <= b <= hi]
    cut = (options[-1] // fs * fs) if options else hi
    bounds[:] = [b for b in bounds if b > cut]
    return cut


@dataclass(frozen=True)
class _Span:
    """What is kept of a chunk once it is decoded: where it lies and how long it is, not its samples."""

    offset_s: float
    samples: int

    def to_file_time(self, t: float) -> float:
        return round(self.offset_s + t, 2)


@dataclass
class _FileState:
    index: int
    path: Path
    record_id: str | None = None
    spans: list[_Span] = field(default_factory=list)
    speech: list[tuple[float, float]] = field(default_factory=list)  # where the VAD heard speech (for speakers)
    results: dict[int, Transcript] = field(default_factory=dict)
    decoded: bool = False
    duration_s: float = 0.0
    error: str | None = None  # the reason, without the file name
    warning: str | None = None  # transcribed, but not all of what the file claims to hold
    started: float = field(default_factory=time.perf_counter)
    engine_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.error is not None or (self.decoded and len(self.results) == len(self.spans))


# a chunk waiting for the engine: its file, its index in the file's spans, its audio
_Job = tuple[_FileState, int, Chunk]


@dataclass(frozen=True)
class Outcome:
    path: Path
    transcript: FileTranscript | None = None
    error: str | None = None  # the reason the file failed, without the file name
    reused: bool = False
    warning: str | None = None  # transcribed from less (or more) audio than the file declares
    engine_s: float | None = None  # seconds of engine calls spent on the file (its share of shared batches)


def _warn(st: _FileState, text: str) -> None:
    st.warning = f"{st.warning}; {text}" if st.warning else text


def describe(exc: BaseException) -> str:
    """An exception as one short line: our own errors by their message, others with their type."""
    text = str(exc) if isinstance(exc, AsrboxError) else f"{type(exc).__name__}: {exc}".rstrip(": ")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


class BatchTranscriber:
    """Files -> Outcomes. Any failure of one file (decoding, VAD, engine, text pipeline) fails that file only:
    its record is marked failed with the reason and the batch goes on. Audio is held only for the chunks
    waiting for the engine (at most `batch_size`, plus the segmenter's buffer of one chunk); a decoded chunk
    leaves its transcript and its place in the file."""

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
        hotwords: Sequence[str] = (),
        speakers: FileSpeakers | None = None,
        speaker_warning: str | None = None,
        words: bool = False,
    ) -> None:
        self.engine = engine
        self.vad_factory = vad_factory
        self.vad_settings = vad_settings
        self.text = text
        self.store = store
        self.batch_size = max(1, batch_size)
        self.language = language
        self.force = force
        self.hotwords = tuple(hotwords)
        self.speakers = speakers  # label each segment's speaker (docs/speakers.md)
        self.speaker_warning = speaker_warning  # speakers were asked for but cannot be labelled: why, on each file
        # word times on the segments (TimedText.words): asked for, or needed to split segments between speakers
        self.words = words or speakers is not None

    def run(self, files: Sequence[Path]) -> Iterator[Outcome]:
        """Outcomes in input order, each as soon as its file is done."""
        pool: list[_Job] = []
        states: deque[_FileState] = deque()
        try:
            for index, path in enumerate(files):
                reused = self._reuse(path)
                if reused is not None:
                    if states:  # keep order: finish what is in flight first
                        self._drain(pool)
                        yield from self._ready(states, force=True)
                    yield reused
                    continue
                st = _FileState(index, path)
                states.append(st)
                self._begin_record(st)
                yield from self._feed(st, pool, states)
                yield from self._ready(states)
            self._drain(pool)
            yield from self._ready(states, force=True)
        finally:
            self._abandon(states)

    # ------------------------------------------------------------------ internals
    def _feed(self, st: _FileState, pool: list[_Job], states: deque[_FileState]) -> Iterator[Outcome]:
        """Decode and chunk one file, sending its chunks to the engine as batches fill up. A failure of this
        file's decoding or VAD fails this file; outcomes of earlier files are yielded as they complete."""
        decoded = [0]  # samples
        with contextlib.closing(self._chunks(st, decoded)) as chunks:
            while st.error is None:  # the engine may fail this file in a flush: stop decoding it then
                try:
                    chunk = next(chunks, None)
                except Exception as exc:
                    self._fail_with(st, exc, pool)
                    return
                if chunk is None:
                    break
                if self.speakers is not None:
                    st.speech += voiced_spans(chunk.voiced, chunk.offset_s)
                self._add(st, chunk, pool)
                if len(pool) >= self.batch_size:
                    self._flush(pool)
                    yield from self._ready(states)
        if st.error is None:
            try:
                self._decoded(st, decoded[0])
            except Exception as exc:
                self._fail_with(st, exc, pool)

    def _chunks(self, st: _FileState, decoded: list[int]) -> Generator[Chunk, None, None]:
        def blocks() -> Iterator[Audio]:
            for b in iter_decode(st.path):
                decoded[0] += b.size
                yield b

        with contextlib.closing(chunk_stream(blocks(), self.vad_factory(), self.vad_settings)) as chunks:
            yield from chunks

    def _decoded(self, st: _FileState, samples: int) -> None:
        st.duration_s = samples / SAMPLE_RATE
        if st.duration_s < MIN_AUDIO_S:
            raise AudioDecodeError(f"audio too short ({st.duration_s:.3f} s); truncated or empty recording?")
        st.warning = wav_mismatch(st.path, samples)
        st.decoded = True

    def _fail_with(self, st: _FileState, exc: Exception, pool: list[_Job]) -> None:
        log.debug("%s: failed", st.path, exc_info=True)
        if isinstance(exc, MemoryError):
            self._fail(st, "too large to process in the available memory", pool)
        else:
            self._fail(st, describe(exc), pool)

    def _add(self, st: _FileState, chunk: Chunk, pool: list[_Job]) -> None:
        st.spans.append(_Span(chunk.offset_s, chunk.audio.size))
        pool.append((st, len(st.spans) - 1, chunk))

    def _fail(self, st: _FileState, reason: str, pool: list[_Job]) -> None:
        st.error = reason.removeprefix(f"{st.path}: ")
        pool[:] = [job for job in pool if job[0] is not st]

    def _drain(self, pool: list[_Job]) -> None:
        while pool:
            self._flush(pool)

    def _flush(self, pool: list[_Job]) -> None:
        """Send the pool to the engine. If the batch fails, each file's chunks are tried on their own, so that
        only the file that makes the engine fail is failed."""
        if not pool:
            return
        batch = list(pool)
        pool.clear()
        try:
            self._decode(batch, pool)
            return
        except Exception as exc:
            groups: dict[int, list[_Job]] = {}
            for job in batch:
                groups.setdefault(id(job[0]), []).append(job)
            if len(groups) == 1:
                log.debug("%s: engine failed", batch[0][0].path, exc_info=True)
                self._fail(batch[0][0], f"transcription failed: {describe(exc)}", pool)
                return
            log.debug("a batch of %d files failed (%s); trying each file alone", len(groups), describe(exc))
        for jobs in groups.values():
            try:
                self._decode(jobs, pool)
            except Exception as exc:
                log.debug("%s: engine failed", jobs[0][0].path, exc_info=True)
                self._fail(jobs[0][0], f"transcription failed: {describe(exc)}", pool)

    def _decode(self, jobs: list[_Job], pool: list[_Job]) -> None:
        """One engine call; results are applied only once the whole call has succeeded."""
        t0 = time.perf_counter()
        results = self.engine.transcribe(
            [chunk.audio for _, _, chunk in jobs],
            DecodeOptions(
                language=self.language,
                hotwords=self.text.engine_hotwords(self.hotwords),
                groups=tuple(st.index for st, _, _ in jobs),
                words=self.words,
            ),
        )
        if len(results) != len(jobs):
            raise RuntimeError(f"the engine returned {len(results)} results for {len(jobs)} chunks")
        share = (time.perf_counter() - t0) / len(jobs)
        for (st, i, chunk), res in zip(jobs, results, strict=True):
            st.results[i] = res
            st.engine_s += share
            tail = chunk.continuation(res.segments[-1].end) if res.segments else None
            if tail is not None:
                self._add(st, tail, pool)

    def _ready(self, states: deque[_FileState], force: bool = False) -> Iterator[Outcome]:
        while states and (states[0].complete or force):
            st = states.popleft()
            yield self._finish(st)

    def _abandon(self, states: deque[_FileState]) -> None:
        """Files still in flight when the run ends early (Ctrl-C, an error outside any file): their records are
        marked failed, never left pending."""
        while states:
            st = states.popleft()
            if self.store is not None and st.record_id:
                with contextlib.suppress(Exception):
                    self.store.fail(st.record_id, "interrupted before it was transcribed")

    def _reuse(self, path: Path) -> Outcome | None:
        if self.store is None or self.force:
            return None
        try:
            rec = self.store.find_done(printable(str(path.resolve())), fingerprint(path))
        except OSError:
            return None
        if rec is None:
            return None
        if self.speakers is not None and (rec.meta.get("speakers") or {}).get("asked") != self.speakers.asked():
            return None  # speakers asked for, not labelled then, or labelled for another count: transcribe again
        log.info("%s: already transcribed (record %s); reusing it (--force to redo)", path, rec.id[:8])
        from daemon.store.speakers import names

        return Outcome(path, transcript_from_record(rec, str(path), names(self.store, "record", rec.id)), reused=True)

    def _begin_record(self, st: _FileState) -> None:
        if self.store is None:
            return
        try:
            fp = fingerprint(st.path)
        except OSError:
            fp = None
        source = printable(str(st.path.resolve()))
        st.record_id = self.store.begin("file", source=source, fingerprint=fp, audio_path=source)

    def _finish(self, st: _FileState) -> Outcome:
        transcript: FileTranscript | None = None
        if st.error is None and not st.complete:
            st.error = "internal error: file not fully transcribed"
        if st.error is None:
            try:
                transcript = self._assemble(st)
            except Exception as exc:
                log.debug("%s: text pipeline failed", st.path, exc_info=True)
                st.error = f"text processing failed: {describe(exc)}"
        if transcript is not None and self.speakers is not None:
            transcript = self._with_speakers(st, transcript)
        elif transcript is not None and self.speaker_warning:
            _warn(st, self.speaker_warning)
        outcome = (
            Outcome(st.path, error=st.error)
            if st.error is not None or transcript is None
            else Outcome(st.path, transcript, warning=st.warning, engine_s=st.engine_s)
        )
        if self.store is not None and st.record_id:
            save_file(self.store, outcome, None, None, st.record_id)  # with the names voices give its labels
        if outcome.transcript is not None:
            log.debug("%s: %s", st.path, outcome.transcript.text)
        return outcome

    def _with_speakers(self, st: _FileState, transcript: FileTranscript) -> FileTranscript:
        """Speaker labels on the segments; a failure leaves them off with a warning, the text stands."""
        assert self.speakers is not None
        try:
            lang, hotwords = transcript.language, self.hotwords

            def text(raw: str) -> str:  # the text pipeline on a part of a segment split where the speaker changes
                return self.text.text(raw, lang, hotwords)

            return self.speakers.label(st.path, transcript, speech=merge(st.speech), text=text)
        except Exception as exc:
            log.debug("%s: speaker labelling failed", st.path, exc_info=True)
            _warn(st, f"speakers not labelled: {describe(exc)}")
            return transcript

    def _assemble(self, st: _FileState) -> FileTranscript:
        """The file's transcript from its chunks' results, in time order, through the text pipeline."""
        segments: list[TimedText] = []
        raw_segments: list[Segment] = []
        votes: dict[str, float] = {}
        replaced: list[dict[str, object]] = []
        for i, span in sorted(enumerate(st.spans), key=lambda ic: ic[1].offset_s):
            res = st.results[i]
            votes[res.language] = votes.get(res.language, 0.0) + span.samples
            processed = self.text.apply(res, self.hotwords)
            replaced += processed.meta.get("hotwords", [])
            for raw, seg in zip(res.segments, processed.segments, strict=True):
                start, end = span.to_file_time(seg.start), span.to_file_time(seg.end)
                raw_segments.append(raw)
                if seg.text:
                    words = tuple(Word(span.to_file_time(w.start), span.to_file_time(w.end), w.text) for w in raw.words)
                    segments.append(TimedText(start, max(end, start), seg.text, words=words))
        language = max(votes.items(), key=lambda kv: kv[1])[0] if votes else (self.language or "")
        return FileTranscript(
            file=str(st.path),
            duration_s=st.duration_s,
            language=language,
            text=join_texts([s.text for s in segments], language),
            raw_text=join_texts([s.text for s in raw_segments], language),
            segments=tuple(segments),
            engine=self.engine.info.as_dict(),
            processing_s=time.perf_counter() - st.started,
            record_id=st.record_id,
            meta={"hotwords": replaced} if replaced else {},
        )


def segment_dict(s: TimedText) -> dict[str, Any]:
    d: dict[str, Any] = {"start": s.start, "end": s.end, "text": s.text}
    if s.speaker:
        d["speaker"] = s.speaker
    return d


def transcript_from_record(rec: Record, file: str, speaker_names: dict[str, str] | None = None) -> FileTranscript:
    return FileTranscript(
        file=file,
        duration_s=rec.duration_s or 0.0,
        language=rec.language or "",
        text=rec.text or "",
        raw_text=rec.raw_text or "",
        segments=tuple(TimedText(s["start"], s["end"], s["text"], s.get("speaker")) for s in rec.segments),
        engine={k: v for k, v in rec.engine.items() if k != "processing_s"},
        processing_s=rec.processing_s or 0.0,
        record_id=rec.id,
        meta=rec.meta,
        speaker_names=speaker_names or {},
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
