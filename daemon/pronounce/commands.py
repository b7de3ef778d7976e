"""`asrbox pronounce score|export`: score a recording against a target; export stored attempts."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from functools import partial
from pathlib import Path
from typing import Any

from daemon.errors import AsrboxError
from daemon.pronounce.score import score
from daemon.settings import Settings


def score_file(args: Namespace, settings: Settings) -> int:
    from daemon.asr.engine import load_engine
    from daemon.audio.vad import load_vad
    from daemon.batch.transcribe import BatchTranscriber
    from daemon.store.db import Store
    from daemon.text.pipeline import TextPipeline

    path = Path(args.file)
    engine = load_engine(settings.asr)
    vad = partial(load_vad, settings.vad.engine)
    text = TextPipeline(settings.text)
    runner = BatchTranscriber(engine, vad, settings.vad, text, None, 1, language=args.language)
    outcome = next(iter(runner.run([path])))
    engine.close()
    if outcome.transcript is None:
        raise AsrboxError(f"{path}: {outcome.error or 'cannot transcribe'}")
    result = score(args.target, outcome.transcript.text, args.language or outcome.transcript.language).as_dict()
    result["learner"] = args.learner
    if not args.no_store:
        store = Store(settings.store.path)
        try:
            result["attempt_id"] = store.add_attempt(result, args.learner, None, None)
        finally:
            store.close()
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def export(args: Namespace, settings: Settings) -> int:
    from daemon.store.db import Store

    store = Store(settings.store.path)
    try:
        rows = store.attempts(learner=args.learner, session_id=args.session)
    finally:
        store.close()
    doc = _csv(rows) if args.format == "csv" else json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(doc)
    else:
        try:
            Path(args.output).write_text(doc, encoding="utf-8")
        except OSError as exc:
            raise AsrboxError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"asrbox: exported {len(rows)} attempts to {args.output}", file=sys.stderr)
    return 0


def _csv(rows: list[dict[str, Any]]) -> str:
    """UTF-8 with a BOM (Excel shows Chinese right only then), cells safe to open (output.formats.to_csv)."""
    from daemon.output.formats import to_csv

    cols = ["id", "created_at", "learner", "session_id", "language", "target", "heard", "score", "issues"]
    keys = ["id", "created_at", "learner", "session_id", "language", "target", "heard", "score"]
    lines = ([*(r[k] if r[k] is not None else "" for k in keys), _issues(r)] for r in rows)
    return to_csv(lines, cols, lineterminator="\r\n")


def _issues(r: dict[str, Any]) -> str:
    return "; ".join(f"{i['expected'] or '+'}→{i['heard'] or '-'} ({i['issue']})" for i in r["items"] if not i["ok"])
