"""Files transcribed inside the daemon (API requests, jobs, Wyoming): the CLI's batch transcriber on the live
worker's engine.

The decode/VAD/assembly work runs on the caller's thread (`asyncio.to_thread` from the loop, or a job thread);
every engine call is queued on the live ASR worker (`SharedEngine`), so one model serves everything and live
finals come first. Nothing here writes to the store: the loop records outcomes (`record_outcome`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.audio.vad import load_vad
from daemon.batch.transcribe import BatchTranscriber, Outcome, segment_dict
from daemon.live.worker import SharedEngine
from daemon.store.db import Store
from daemon.text.pipeline import TextPipeline

if TYPE_CHECKING:
    from daemon.core.app import App


@dataclass(frozen=True)
class FileOptions:
    """Per-request choices; None = the box's settings. `hotwords` add to the box's list."""

    language: str | None = None
    hotwords: tuple[str, ...] = ()
    itn: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # room for later options (speakers ...)

    def as_dict(self) -> dict[str, Any]:
        return {"language": self.language, "hotwords": list(self.hotwords), "itn": self.itn, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileOptions:
        known = {"language", "hotwords", "itn"}
        return cls(
            language=d.get("language") or None,
            hotwords=tuple(d.get("hotwords") or ()),
            itn=d.get("itn"),
            extra={k: v for k, v in d.items() if k not in known},
        )


class FileTranscription:
    """Builds batch transcribers that share the daemon's engine. Safe to call from any thread: it only reads
    settings fixed at start and the box's hotword list (an immutable tuple the loop replaces)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._text: dict[bool, TextPipeline] = {}

    def _pipeline(self, itn: bool | None) -> TextPipeline:
        s = self.app.settings
        if itn is None or itn == s.text.itn:
            return self.app.text
        key = bool(itn)
        cached = self._text.get(key)
        if cached is None:
            cached = TextPipeline(s.text.model_copy(update={"itn": key}))
            self._text[key] = cached
        return cached

    def transcriber(
        self, options: FileOptions, interactive: bool, stop: threading.Event | None = None
    ) -> BatchTranscriber:
        s = self.app.settings
        language = options.language if options.language not in (None, "", "auto") else None
        if language is None and s.asr.language != "auto":
            language = s.asr.language
        terms = tuple(dict.fromkeys((*self.app.box_hotwords, *options.hotwords)))
        return BatchTranscriber(
            SharedEngine(self.app.worker, interactive, stop),
            partial(load_vad, s.vad.engine),
            s.vad,
            self._pipeline(options.itn),
            None,
            s.asr.batch_size,
            language=language,
            force=True,
            hotwords=terms,
        )

    def run(
        self, files: Sequence[Path], options: FileOptions, interactive: bool, stop: threading.Event | None = None
    ) -> Iterator[Outcome]:
        """Blocking (a thread's): outcomes in order, as each file completes; `stop` ends a file after the window
        in hand (it fails with the reason)."""
        yield from self.transcriber(options, interactive, stop).run(files)


def record_outcome(store: Store, outcome: Outcome, source: str, audio_path: str | None) -> str:
    """Store a file's outcome as a record (done or failed); returns the record id. The loop's to call."""
    rid = store.begin("file", source=source, fingerprint=None, audio_path=audio_path)
    t = outcome.transcript
    if t is None:
        store.fail(rid, outcome.error or "no transcript")
        return rid
    store.finish(
        rid,
        language=t.language,
        raw_text=t.raw_text,
        text=t.text,
        segments=[segment_dict(x) for x in t.segments],
        engine={**t.engine, "processing_s": round(t.processing_s, 3)},
        processing_s=t.processing_s,
        duration_s=t.duration_s,
        meta={**t.meta, "warning": outcome.warning} if outcome.warning else t.meta,
    )
    return rid
