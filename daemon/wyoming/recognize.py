"""Recognition for Wyoming requests: the daemon's own file path (VAD, shared engine, text pipeline) on a
temporary 16 kHz WAV. Finals run at interactive priority and are recorded (kind 'file', source 'wyoming');
partial previews are live-style drafts at the partials' priority, not recorded."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from daemon.core.files import FileOptions
from daemon.live.worker import SharedEngine
from daemon.transcript import DecodeOptions
from daemon.wyoming.audio import write_wav
from daemon.wyoming.pcm import Pcm16

if TYPE_CHECKING:
    from daemon.core.app import App

SOURCE = "wyoming"


class RecognitionFailed(Exception):
    pass


async def final_text(core: App, pcm: Pcm16, language: str | None) -> tuple[str, str | None]:
    """(text, language) of the whole request; stored as a record."""
    with tempfile.TemporaryDirectory(prefix="asrbox-wyoming-") as tmp:
        path = Path(tmp) / "request.wav"
        await asyncio.to_thread(write_wav, path, pcm)
        outcome, _ = await core.transcribe_file(path, FileOptions(language=language), SOURCE)
    if outcome.transcript is None:
        raise RecognitionFailed(outcome.error or "no transcript")
    return outcome.transcript.text, outcome.transcript.language or None


def partial_text(core: App, pcm: Pcm16, language: str | None) -> tuple[str, str | None]:
    """Blocking (a thread's): a draft of the audio so far, as the live partials are made (greedy, short window,
    the text pipeline without hotword correction), queued behind live speech, API calls and finals."""
    audio = pcm.astype(np.float32) / 32768.0
    draft = DecodeOptions(language, beam_size=1, fallback=False, draft=True)
    (t,) = SharedEngine(core.worker, interactive=False).transcribe([audio], draft)
    return core.text.apply(t, ()).text, t.language or None
