"""`asrbox models prepare-speakers`, the speaker lines of `asrbox models list|verify`, and `asrbox speakers
list|rename|enroll|delete`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from daemon.errors import AsrboxError, ConfigError, ModelError
from daemon.settings import Settings
from daemon.speakers.models import present, problems, read_manifest
from daemon.store import speakers as db
from daemon.store.db import Store


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
    if args.action == "rename":
        scope, scope_id = ("session", args.session) if args.session else ("record", args.record)
        _check_scope(store, scope, scope_id)
        db.rename(store, scope, scope_id, args.label.strip(), args.name.strip() or None)
        shown = f"{args.label} -> {args.name!r}" if args.name.strip() else f"{args.label}: name removed"
        print(f"asrbox: {scope} {scope_id}: {shown}", file=sys.stderr)
        return 0
    if args.action == "enroll":
        seconds = _enroll(settings, store, args.name.strip(), args.audio)
        print(f"asrbox: voice {args.name!r} enrolled from {seconds:.1f} s of audio", file=sys.stderr)
        return 0
    if args.action == "delete":
        if not db.delete_voice(store, args.name):
            raise ConfigError(f"no enrolled voice {args.name!r}")
        print(f"asrbox: voice {args.name!r} deleted", file=sys.stderr)
        return 0
    if args.session or args.record:
        scope, scope_id = ("session", args.session) if args.session else ("record", args.record)
        print(json.dumps(db.names(store, scope, scope_id), ensure_ascii=False, indent=2))
        return 0
    for v in db.voices(store):
        print(f"{v.name}\t{v.seconds:.1f} s\t{v.created_at}")
    return 0


def _check_scope(store: Store, scope: str, scope_id: str) -> None:
    found = store.session(scope_id) if scope == "session" else store.get(scope_id)
    if found is None:
        raise ConfigError(f"no {scope} {scope_id}")


MIN_ENROLL_S = 3.0


def _enroll(settings: Settings, store: Store, name: str, path: Path) -> float:
    from daemon.audio.decode import SAMPLE_RATE, decode_file
    from daemon.speakers.embed import Embedder
    from daemon.speakers.models import load

    if not name:
        raise ConfigError("a voice needs a name")
    audio = decode_file(path)
    seconds = audio.size / SAMPLE_RATE
    if seconds < MIN_ENROLL_S or float(np.abs(audio).max(initial=0.0)) < 1e-3:
        raise AsrboxError(f"{path}: need at least {MIN_ENROLL_S:.0f} s of speech to enroll a voice")
    embedder = Embedder(load(settings.speakers.folder(settings.asr)).embedding, settings.speakers.threads)
    vector = embedder.embed(audio)
    if vector is None:
        raise ModelError(f"{path}: no voice found in the audio")
    db.add_voice(store, name, vector, seconds)
    return seconds
