"""Speakers of live finals. The ASR worker computes each final's embedding on its thread (`embedder`); the
loop owns everything else here: per session an online clustering (stable labels, S1 stays S1), rebuilt from the
store after a restart, the names given to labels, and the enrolled voices that name a speaker automatically. The
segmenter thread cuts an utterance where another voice takes over (`turn_watch`, daemon/speakers/change.py),
so that one final holds one speaker."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from daemon.errors import ModelError
from daemon.settings import Settings
from daemon.speakers.cluster import OnlineSpeakers, label
from daemon.speakers.models import SpeakerModels, present

if TYPE_CHECKING:
    from daemon.speakers.change import TurnWatch
    from daemon.speakers.embed import Embedder
    from daemon.store.db import Store
    from daemon.store.speakers import Voice

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]


def live_models(settings: Settings) -> SpeakerModels | None:
    """The speaker models when live labels are on, else None. `live = "on"` without the models is a ModelError
    (the daemon refuses to start); `auto` without them is off, logged once."""
    sp = settings.speakers
    folder = sp.folder(settings.asr)
    if sp.live == "off":
        return None
    if not present(folder):
        if sp.live == "on":
            raise ModelError(f"[speakers] live = on, but there are no speaker models in {folder}")
        log.info("live speaker labels off: no speaker models in %s (asrbox models prepare-speakers)", folder)
        return None
    from daemon.speakers.models import load, problems

    damaged = problems(folder) if sp.live == "auto" else []  # `on` fails at load with ModelError instead
    if damaged:
        log.warning("live speaker labels off: %s: %s (asrbox models verify)", folder, "; ".join(damaged))
        return None

    return load(folder)


def embedder(settings: Settings, models: SpeakerModels) -> Embedder:
    """CAM++ for live finals: one onnxruntime session, shared by the ASR worker's embeddings and the segmenter
    thread's change-of-voice checks (a session runs from several threads; loading it twice cost 75 MB)."""
    from daemon.speakers.embed import Embedder

    return Embedder(models.embedding, settings.speakers.threads)


def turn_watch(settings: Settings, models: SpeakerModels, embed: Embedder) -> TurnWatch | None:
    """The segmenter thread's change-of-voice watch (its own segmentation session), unless `split_turns` is
    off."""
    if not settings.speakers.split_turns:
        return None
    from daemon.speakers.change import ChangeDetector, TurnWatch

    return TurnWatch(ChangeDetector(models, settings.speakers.threads, embed))


class LiveSpeakers:
    """Loop-owned: assign a label (and a name, where one is known) to each final's embedding."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.threshold = settings.speakers.live_threshold
        self.voice_threshold = settings.speakers.voice_threshold
        self._sessions: dict[str | None, OnlineSpeakers] = {}
        self._voices: list[Voice] = []
        self._voices_version: tuple[int, str] | None = None

    def _online(self, session_id: str | None) -> OnlineSpeakers:
        found = self._sessions.get(session_id)
        if found is None:
            from daemon.store import speakers as db

            found = OnlineSpeakers(threshold=self.threshold)
            for lab, vector in db.session_embeddings(self.store, session_id):
                if lab.startswith("S") and lab[1:].isdigit():
                    found.restore(int(lab[1:]) - 1, vector)
            self._sessions = {session_id: found}  # one session at a time: the previous one's state goes
        return found

    def assign(self, session_id: str | None, vector: Vector) -> tuple[str, str | None]:
        """(label, name or None) of the final whose embedding is `vector`. A label without a name (and whose
        name no user removed) is named by the enrolled voice it sounds like, unless that voice already names
        another label of the session; the name is then kept as the session's."""
        from daemon.store import speakers as db

        online = self._online(session_id)
        lab = label(online.assign(vector))
        known = db.names(self.store, "session", session_id, removed=True)
        if lab in known:
            return lab, known[lab] or None
        voice = self._voice(online.centroid(int(lab[1:]) - 1), taken=set(known.values()))
        if voice is not None and session_id is not None:  # kept as the session's name: exports and search see it
            db.rename(self.store, "session", session_id, lab, voice)
        return lab, voice

    def _voice(self, centroid: Vector, taken: set[str]) -> str | None:
        from daemon.store import speakers as db

        version = db.voices_version(self.store)  # `asrbox speakers enroll|delete` may run beside the daemon
        if version != self._voices_version:
            self._voices, self._voices_version = db.voices(self.store), version
        best, name = self.voice_threshold, None
        for v in self._voices:
            sim = float(v.embedding @ centroid)
            if sim >= best and v.name not in taken:
                best, name = sim, v.name
        return name

    def forget_voices(self) -> None:
        """Enrolled voices changed: read them again on the next final."""
        self._voices_version = None
