"""`asrbox models prepare-speakers`, the speaker lines of `asrbox models list|verify`, and `asrbox speakers
list|rename|enroll|delete`."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.errors import AsrboxError, AudioDecodeError, ConfigError, ModelError
from daemon.settings import Settings
from daemon.speakers.models import present, problems, read_manifest
from daemon.store import speakers as db
from daemon.store.db import Store
from daemon.store.speakers import Vector


def prepare_speakers(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.speakers.provision import prepare

    target = settings.speakers.folder(settings.asr)
    t0 = time.monotonic()
    prepare(target, args.wheel)
    print(f"asrbox: speaker models ready in {target} ({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    return 0


def show_speaker_models(settings: Settings, verify: bool) -> int:
    """Print the speaker models' line(s); returns how many failed verification (a missing folder is not one)."""
    folder = settings.speakers.folder(settings.asr)
    if not present(folder):
        print(f"speakers     campplus+segmentation  not prepared  {folder}  (asrbox models prepare-speakers)")
        return 0
    source = read_manifest(folder).get("source", "?")
    if not verify:
        print(f"speakers     campplus+segmentation  onnx  {folder}  ({source})")
        return 0
    found = problems(folder)
    if found:
        print(f"asrbox: {folder}: {'; '.join(found)}", file=sys.stderr)
        return 1
    print(f"asrbox: {folder}: ok (speaker models, sha256 verified)", file=sys.stderr)
    return 0


def cmd_speakers(args: argparse.Namespace, settings: Settings) -> int:
    store = Store(settings.store.path)
    try:
        return _run(args, settings, store)
    finally:
        store.close()


def _run(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    _check_text(args)
    if args.action == "rename":
        scope, scope_id = ("session", args.session) if args.session else ("record", args.record)
        _check_scope(store, scope, scope_id)
        label, name = speaker_label(args.label.strip()), speaker_name(args.name)
        db.rename(store, scope, scope_id, label, name)
        shown_name = f"{label} -> {name!r}" if name else f"{label}: name removed"
        print(f"asrbox: {scope} {scope_id}: {shown_name}", file=sys.stderr)
        return 0
    if args.action == "enroll":
        seconds = _enroll(settings, store, args.name, args.audio)
        print(f"asrbox: voice {voice_name(args.name)!r} enrolled from {seconds:.1f} s of audio", file=sys.stderr)
        return 0
    if args.action == "delete":
        if not db.delete_voice(store, args.name):
            raise ConfigError(f"no enrolled voice {shown(args.name)}")
        print(f"asrbox: voice {args.name!r} deleted", file=sys.stderr)
        return 0
    if args.session or args.record:
        scope, scope_id = ("session", args.session) if args.session else ("record", args.record)
        _check_scope(store, scope, scope_id)
        print(json.dumps(db.names(store, scope, scope_id), ensure_ascii=False, indent=2))
        return 0
    for v in db.voices(store):
        print(f"{v.name}\t{v.seconds:.1f} s\t{v.created_at}")
    return 0


def _check_text(args: argparse.Namespace) -> None:
    """Arguments that are not UTF-8 (the shell passed bytes the locale cannot decode) are one line, not the
    store's UnicodeEncodeError."""
    for key in ("name", "label", "session", "record"):
        value = getattr(args, key, None)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{key}: not valid UTF-8 text") from None


def _check_scope(store: Store, scope: str, scope_id: str) -> None:
    found = store.session(scope_id) if scope == "session" else store.get(scope_id)
    if found is None:
        raise ConfigError(f"no {scope} {shown(scope_id)}")


MIN_ENROLL_S = 3.0  # of audio; of it at least MIN_VOICED_S must be speech (the VAD's)
MIN_VOICED_S = 1.5
MAX_ENROLL_S = 60.0  # longer audio is refused before it is all decoded (3-30 s of one person is what is asked)
NAME_MAX = 100
Embed = Callable[[npt.NDArray[np.float32]], "npt.NDArray[np.float32] | None"]


LABEL = re.compile(r"S[1-9][0-9]{0,2}")  # S1..S999, as the labellers write them
_NOT_IN_NAMES = ("Cc", "Cf", "Cs", "Co", "Cn")  # control, format (bidi overrides), surrogate, private, unassigned
_JOINERS = ("\u200c", "\u200d")  # format characters names need: ZWNJ (Persian names), ZWJ (emoji sequences)


def voice_name(raw: str, what: str = "a voice's name") -> str:
    """An enrolled voice's (or a label's given) name, checked: NFC, runs of white space (new lines too) one
    space, trimmed, 1-100 characters, no control, format, surrogate or unassigned characters (a name is written
    into SRT/VTT cues, CSV rows and log lines: it must stay one line that reads as it looks)."""
    name = db.stored_name(raw)
    if not name:
        raise ConfigError(f"{what} is empty")
    if "\ufffd" in name:  # what bytes that are not UTF-8 decode to (a form field, a JSON body)
        raise ConfigError(f"{what} is not valid UTF-8 text")
    if len(name) > NAME_MAX or any(unicodedata.category(c) in _NOT_IN_NAMES and c not in _JOINERS for c in name):
        raise ConfigError(f"{what} has at most {NAME_MAX} characters and no control characters")
    return name


def speaker_name(raw: str | None) -> str | None:
    """A name given to a label (`rename`): checked as a voice's name; None (remove the name) when empty."""
    return voice_name(raw, "a speaker's name") if raw and raw.strip() else None


def speaker_label(raw: str) -> str:
    """A speaker label as the labellers write them (S1, S2... S999); ConfigError naming it otherwise."""
    if not LABEL.fullmatch(raw):
        raise ConfigError(f"not a speaker label: {shown(raw, 20)} (S1, S2...)")
    return raw


def shown(text: str, limit: int = 100) -> str:
    """`text` quoted for a one-line message, cut at `limit` characters."""
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def voice_embedding(settings: Settings, path: Path, shown: str, embed: Embed | None = None) -> tuple[Vector, float]:
    """Blocking (a thread's): the voice in `path` (any audio the box decodes) as an embedding, and the audio's
    seconds. One line (AsrboxError) when it is not audio, too short, too long, silent or holds no voice. `embed`:
    an already loaded CAM++ (else it is loaded here); `shown` names the file in messages."""
    from daemon.audio.decode import SAMPLE_RATE, iter_decode

    blocks, samples = [], 0
    try:
        for block in iter_decode(path):
            blocks.append(block)
            samples += block.size
            if samples > MAX_ENROLL_S * SAMPLE_RATE:
                raise AsrboxError(f"{shown}: longer than {MAX_ENROLL_S:.0f} s: enroll 3-30 s of one person's speech")
    except AudioDecodeError as exc:
        raise AudioDecodeError(str(exc).replace(str(path), shown)) from None
    audio = np.concatenate(blocks)
    seconds = audio.size / SAMPLE_RATE
    if seconds < MIN_ENROLL_S or _voiced_s(settings, audio) < MIN_VOICED_S:
        raise AsrboxError(f"{shown}: need at least {MIN_ENROLL_S:.0f} s of speech to enroll a voice")
    vector = (embed or _load_embed(settings))(audio)
    if vector is None:
        raise ModelError(f"{shown}: no voice found in the audio")
    return vector, seconds


def _load_embed(settings: Settings) -> Embed:
    """The CAM++ of the speaker models folder (a damaged file: a ModelError naming `asrbox models verify`)."""
    from daemon.speakers.embed import Embedder
    from daemon.speakers.models import load

    return Embedder(load(settings.speakers.folder(settings.asr)).embedding, settings.speakers.threads).embed


def _voiced_s(settings: Settings, audio: npt.NDArray[np.float32]) -> float:
    """Seconds of `audio` the box's VAD takes for speech."""
    from daemon.audio.decode import SAMPLE_RATE
    from daemon.audio.vad import FrameSplitter, load_vad

    vad = load_vad(settings.vad.engine)
    frames = FrameSplitter(vad.frame_samples).push(audio)
    voiced = int((vad.probs(frames) >= settings.vad.threshold).sum()) if len(frames) else 0
    return voiced * vad.frame_samples / SAMPLE_RATE


def _enroll(settings: Settings, store: Store, name: str, path: Path) -> float:
    name = voice_name(name)
    vector, seconds = voice_embedding(settings, path, str(path))
    db.add_voice(store, name, vector, seconds)
    return seconds
