"""Files transcribed inside the daemon (API requests, jobs, Wyoming): the CLI's batch transcriber on the live
worker's engine.

The decode/VAD/assembly work runs on the caller's thread (`asyncio.to_thread` from the loop, or a job thread);
every engine call is queued on the live ASR worker (`SharedEngine`), so one model serves everything and live
finals come first. Nothing here writes to the store: the loop records outcomes (`store.records.save_file`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.audio.vad import load_vad
from daemon.batch.transcribe import BatchTranscriber, Outcome, describe
from daemon.live.worker import SharedEngine
from daemon.speakers.files import FileSpeakers, SpeakerRequest
from daemon.speakers.models import present
from daemon.store import speakers as speaker_db
from daemon.text.pipeline import TextPipeline

if TYPE_CHECKING:
    from daemon.core.app import App
    from daemon.store.speakers import Voice

log = logging.getLogger(__name__)
NO_SPEAKER_MODELS = "speaker models are not installed: asrbox models prepare-speakers"


@dataclass(frozen=True)
class FileOptions:
    """Per-request choices; None = the box's settings. `hotwords` add to the box's list; `speakers`: label who
    speaks (None: no labels)."""

    language: str | None = None
    hotwords: tuple[str, ...] = ()
    itn: bool | None = None
    speakers: SpeakerRequest | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # room for later options
    words: bool = False  # word times on the segments (/v1 timestamp_granularities[]=word); not stored with jobs

    def as_dict(self) -> dict[str, Any]:
        """As a job stores it: the form's field names (`speakers` "auto" or N, `min_speakers`, `max_speakers`)."""
        sp = self.speakers
        return {
            "language": self.language,
            "hotwords": list(self.hotwords),
            "itn": self.itn,
            "speakers": None if sp is None else (sp.speakers or "auto"),
            "min_speakers": None if sp is None else sp.min_speakers,
            "max_speakers": None if sp is None else sp.max_speakers,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileOptions:
        known = {"language", "hotwords", "itn", "speakers", "min_speakers", "max_speakers"}
        asked = d.get("speakers")
        return cls(
            language=d.get("language") or None,
            hotwords=tuple(d.get("hotwords") or ()),
            itn=d.get("itn"),
            speakers=None
            if asked is None
            else SpeakerRequest.parse(str(asked), d.get("min_speakers"), d.get("max_speakers")),
            extra={k: v for k, v in d.items() if k not in known},
        )


class FileTranscription:
    """Builds batch transcribers that share the daemon's engine. Safe to call from any thread: it only reads
    settings fixed at start and the box's hotword list (an immutable tuple the loop replaces)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._text: dict[bool, TextPipeline] = {}
        self._labeller: FileSpeakers | None = None  # the speaker models, loaded once by the first thread to ask
        self._labeller_lock = threading.Lock()
        self.voices: tuple[Voice, ...] = tuple(speaker_db.voices(app.store))  # the loop replaces it (reload)

    # ------------------------------------------------------------------ speakers
    def speaker_models_missing(self) -> str | None:
        """Why speakers cannot be labelled (the models folder is not there), else None. Cheap: file checks."""
        s = self.app.settings
        return None if present(s.speakers.folder(s.asr)) else NO_SPEAKER_MODELS

    def reload_voices(self) -> None:
        """The loop's, after a voice was enrolled or deleted: files and the live labeller use the new list."""
        self.voices = tuple(speaker_db.voices(self.app.store))
        self.app.utterances.speakers.forget_voices()

    def labeller(self, request: SpeakerRequest) -> FileSpeakers:
        """Blocking (a worker thread's): a FileSpeakers for this request. The ONNX sessions are loaded once and
        shared (onnxruntime runs them from several threads); each request gets its own bounds and voices."""
        with self._labeller_lock:
            if self._labeller is None:
                self._labeller = FileSpeakers(self.app.settings, request)
            base = self._labeller
        return base.with_request(request, self.voices)

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
        speakers, warning = None, None
        if options.speakers is not None:
            try:
                speakers = self.labeller(options.speakers)
            except Exception as exc:  # the models went away or are damaged: the text still comes, with a warning
                log.warning("speaker labelling unavailable: %s", describe(exc))
                warning = f"speakers not labelled: {describe(exc)}"
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
            speakers=speakers,
            speaker_warning=warning,
            words=options.words,
        )

    def run(
        self, files: Sequence[Path], options: FileOptions, interactive: bool, stop: threading.Event | None = None
    ) -> Iterator[Outcome]:
        """Blocking (a thread's): outcomes in order, as each file completes; `stop` ends a file after the window
        in hand (it fails with the reason). Speaker models that cannot be loaded leave the text without labels,
        with a warning; if the transcriber cannot be built at all, every file fails with the reason."""
        try:
            runner = self.transcriber(options, interactive, stop)
        except Exception as exc:
            log.debug("file transcriber not built", exc_info=True)
            for path in files:
                yield Outcome(path, error=describe(exc))
            return
        yield from runner.run(files)
