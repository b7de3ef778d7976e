"""File-transcription benchmark: asrbox against plain faster-whisper on the same model and clips, same run.

Accuracy: WER (space-separated languages) or CER (zh, yue, ja) per language, pooled over clips
(total edits / total reference units). Speed: wall time over all clips, RTF, and the ratio asrbox / baseline.
Both sides run in this process, one after the other. asrbox decodes deterministically; the baseline's
temperature fallback samples, so CTranslate2's random seed is fixed before it (it takes effect only in a
process that has not sampled yet: CTranslate2 seeds each thread's generator once).

    scripts/bench [--manifest ../shared/eval/manifest.jsonl] [--runs 2] [--lang en,zh] [--write-doc]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import EVAL, ROOT, eval_rows

LONG_WAV = "en/en_long_concat_hifitts6097.wav"  # the live and soak benchmarks' recording
CHAR_LANGS = {"zh", "yue", "ja"}


_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0..999 in English words, so that '8' and 'eight' score the same (as Whisper's normaliser does)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


def normalize(text: str, lang: str) -> list[str]:
    from daemon.text.script import convert_script

    text = unicodedata.normalize("NFKC", text).lower()
    if lang in ("zh", "yue"):
        text = convert_script(text, "simplified")
    text = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    if lang in CHAR_LANGS:
        return [c for c in text if not c.isspace()]
    words = text.split()
    if lang == "en":
        words = [w2 for w in words for w2 in (number_words(int(w)).split() if w.isdigit() and int(w) < 1000 else [w])]
    return words


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def score(rows: list[dict[str, Any]], hyps: dict[str, str]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for r in rows:
        ref, hyp = normalize(r["text"], r["lang"]), normalize(hyps.get(r["id"], ""), r["lang"])
        e, n, c = out.get(r["lang"], (0, 0, 0))
        out[r["lang"]] = (e + edit_distance(ref, hyp), n + len(ref), c + 1)
    return out


def run_baseline(model_dir: Path, rows: list[dict[str, Any]], base: Path) -> tuple[dict[str, str], float]:
    import ctranslate2
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir))  # faster-whisper's defaults
    ctranslate2.set_random_seed(0)
    hyps = {}
    t0 = time.perf_counter()
    for r in rows:
        segments, _info = model.transcribe(str(base / r["path"]))
        hyps[r["id"]] = "".join(s.text for s in segments)
    return hyps, time.perf_counter() - t0


def run_asrbox(rows: list[dict[str, Any]], base: Path, batch_size: int | None) -> tuple[dict[str, str], float, str]:
    from daemon.asr.engine import load_engine
    from daemon.audio.vad import SileroVad
    from daemon.batch.transcribe import BatchTranscriber
    from daemon.settings import load_settings
    from daemon.text.pipeline import TextPipeline

    settings = load_settings(None, {"asr": {"batch_size": batch_size}})
    batch_size = settings.asr.batch_size
    engine = load_engine(settings.asr)
    runner = BatchTranscriber(engine, SileroVad, settings.vad, TextPipeline(settings.text), None, batch_size)
    files = [base / r["path"] for r in rows]
    by_path = {str(f): r["id"] for f, r in zip(files, rows, strict=True)}
    hyps = {}
    t0 = time.perf_counter()
    for outcome in runner.run(files):
        hyps[by_path[str(outcome.path)]] = outcome.transcript.text if outcome.transcript else ""
    dt = time.perf_counter() - t0
    label = engine.info.model
    engine.close()
    return hyps, dt, label


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=str(EVAL / "manifest.jsonl"))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--lang", help="comma-separated languages to keep (default: all)")
    ap.add_argument("--batch-size", type=int, help="windows decoded together (default: asr.batch_size, 4)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--write-doc", action="store_true", help="write the results into docs/benchmarks.md")
    ap.add_argument("--live", action="store_true", help="the live benchmark (daemon + Mosquitto, real speed)")
    ap.add_argument("--against", metavar="REV", help="with --live: also run the daemon of commit REV in the same run")
    ap.add_argument("--speed", type=float, default=1.0, help="with --live/--soak: playback speed")
    ap.add_argument("--soak", type=float, metavar="HOURS", help="memory soak: this many hours through the live path")
    ap.add_argument("--hotwords", action="store_true", help="hotword recall with each layer (bench_text.py)")
    ap.add_argument("--itn", action="store_true", help="ITN case table and speed (bench_text.py)")
    ap.add_argument("--engine", help="engine benchmark: funasr,onnx (random-weight real sizes vs Whisper base)")
    ap.add_argument("--batch", default="1,8", help="with --engine: batch sizes")
    args = ap.parse_args()
    if args.engine:
        import bench_engines

        md = bench_engines.bench(Path(args.manifest), args.engine.split(","), [int(b) for b in args.batch.split(",")])
        print(md)
        if args.write_doc:
            write_doc(md, "engines")
        return 0
    if args.hotwords or args.itn:
        import bench_text

        md = bench_text.hotwords(Path(args.manifest)) if args.hotwords else bench_text.itn()
        print(md)
        if args.write_doc:
            write_doc(md, "hotwords" if args.hotwords else "itn")
        return 0
    if args.soak:
        return soak(args)
    if args.live:
        return live(args)

    manifest = Path(args.manifest)
    if not manifest.is_file():
        print(f"bench: manifest not found: {manifest}", file=sys.stderr)
        return 66
    rows = eval_rows(manifest, set(args.lang.split(",")) if args.lang else None)
    base = manifest.parent
    audio_s = sum(float(r.get("duration_s", 0)) for r in rows)

    from daemon.asr.models import prepare_embedded_model
    from daemon.settings import load_settings

    model_dir = prepare_embedded_model(load_settings(None).asr.cache_dir)
    print(f"bench: {len(rows)} clips, {audio_s:.1f} s of audio, {args.runs} run(s); {machine()}", file=sys.stderr)

    results: list[dict[str, Any]] = []
    for run in range(1, args.runs + 1):
        ours, t_ours, label = run_asrbox(rows, base, args.batch_size)
        print(f"bench: run {run} asrbox {t_ours:.1f} s (RTF {t_ours / audio_s:.3f})", file=sys.stderr)
        entry: dict[str, Any] = {"run": run, "asrbox_s": t_ours, "asrbox": score(rows, ours), "label": label}
        if not args.skip_baseline:
            theirs, t_base = run_baseline(model_dir, rows, base)
            print(f"bench: run {run} baseline {t_base:.1f} s (RTF {t_base / audio_s:.3f})", file=sys.stderr)
            entry.update(baseline_s=t_base, baseline=score(rows, theirs), ratio=t_ours / t_base)
        results.append(entry)

    md = report(results, audio_s, len(rows), args)
    print(md)
    if args.write_doc:
        write_doc(md, "file")
    return 0


def live(args: argparse.Namespace) -> int:
    import bench_live

    wav = EVAL / LONG_WAV
    if not wav.is_file():
        print(f"bench: {wav} not found", file=sys.stderr)
        return 66
    if args.against:
        return live_against(args, wav)
    res = bench_live.run_live(wav, wav.with_suffix(".segments.json"), args.speed)
    print(f"bench: daemon exit {res['rc']}, {res['wall_s']:.1f} s; logs in {res['work']}", file=sys.stderr)
    base = [] if args.skip_baseline else bench_live.baseline_per_utterance(wav, res["refs"])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = (
        f"Measured {when} on {machine()}; command `scripts/bench --live`; {wav.name} (82 s, 14 utterances) "
        f"played at {args.speed:g}x into `asrbox run --source`.\n\n" + bench_live.report(res, base)
    )
    print(md)
    if args.write_doc:
        write_doc(md, "live")
    return 0 if res["rc"] == 0 else 1


def live_against(args: argparse.Namespace, wav: Path) -> int:
    """The live benchmark for commit REV (a temporary git worktree) and for this tree, one after the other,
    twice (REV, this, REV, this) so that load on the machine hits both alike; the runs of each are pooled."""
    import subprocess
    import tempfile

    import bench_live

    tree = Path(tempfile.mkdtemp(prefix="asrbox-rev-")) / "tree"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), args.against], cwd=ROOT, check=True)
    runs: dict[str, list[dict[str, Any]]] = {"now": [], "rev": []}
    try:
        for _ in range(2):
            for key, root in (("rev", tree), ("now", ROOT)):
                res = bench_live.run_live(wav, wav.with_suffix(".segments.json"), args.speed, root=root)
                print(f"bench: {key} exit {res['rc']}, {res['wall_s']:.1f} s; logs in {res['work']}", file=sys.stderr)
                runs[key].append(res)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    pooled = {k: _pool(v) for k, v in runs.items()}
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = (
        f"Measured {when} on {machine()}; command `scripts/bench --live --against {args.against}`; {wav.name} "
        f"played at {args.speed:g}x, twice by each daemon, alternating.\n\n"
        + bench_live.compare(pooled["now"], pooled["rev"], args.against)
    )
    print(md)
    if args.write_doc:
        write_doc(md, "live-against")
    return 0 if all(r["rc"] == 0 for v in runs.values() for r in v) else 1


def _pool(results: list[dict[str, Any]]) -> dict[str, Any]:
    first = results[0]
    return {
        **first,
        "latency_ms": [x for r in results for x in r["latency_ms"]],
        "first_partial_s": [x for r in results for x in r["first_partial_s"]],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "seq_gapless": all(r["seq_gapless"] for r in results),
    }


def soak(args: argparse.Namespace) -> int:
    import bench_live

    wav = EVAL / LONG_WAV
    audio_s = 81.632
    loops = max(1, round(args.soak * 3600 / audio_s))
    res = bench_live.run_live(wav, wav.with_suffix(".segments.json"), args.speed, loops)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = (
        f"Measured {when} on {machine()}; command `scripts/bench --soak {args.soak:g} --speed {args.speed:g}`."
        "\n\n" + bench_live.soak_report(res, loops, args.speed, audio_s)
    )
    print(md)
    if args.write_doc:
        write_doc(md, "soak")
    return 0 if res["rc"] == 0 else 1


def report(results: list[dict[str, Any]], audio_s: float, clips: int, args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "scripts/bench " + " ".join(sys.argv[1:])
    lines = [
        f"Measured {when} on {machine()}; command `{cmd.strip()}`; {clips} clips, {audio_s:.1f} s of audio.",
        "",
        "| run | asrbox s | RTF | baseline s | RTF | ratio asrbox/baseline |",
        "|---|---|---|---|---|---|",
    ]
    for e in results:
        b = e.get("baseline_s")
        lines.append(
            f"| {e['run']} | {e['asrbox_s']:.1f} | {e['asrbox_s'] / audio_s:.3f} | "
            + (f"{b:.1f} | {b / audio_s:.3f} | **{e['ratio']:.2f}** |" if b else "- | - | - |")
        )
    lines += ["", "| lang | metric | clips | asrbox | baseline (plain faster-whisper) |", "|---|---|---|---|---|"]
    langs = sorted(results[0]["asrbox"])
    for lang in langs:
        metric = "CER" if lang in CHAR_LANGS else "WER"
        ours = " / ".join(f"{100 * e['asrbox'][lang][0] / max(e['asrbox'][lang][1], 1):.1f}%" for e in results)
        base = " / ".join(
            f"{100 * e['baseline'][lang][0] / max(e['baseline'][lang][1], 1):.1f}%" for e in results if "baseline" in e
        )
        lines.append(f"| {lang} | {metric} | {results[0]['asrbox'][lang][2]} | {ours} | {base or '-'} |")
    lines.append("")
    lines.append(
        f"asrbox model: {results[0]['label']}, batch size {args.batch_size or 'default (4)'}; baseline: "
        "`WhisperModel(dir).transcribe(path)` at its defaults (float32 on CPU, beam 5, one file at a time)."
    )
    return "\n".join(lines) + "\n"


def write_doc(md: str, section: str = "file") -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{md}{end}{tail}", encoding="utf-8")
    print(f"bench: wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
