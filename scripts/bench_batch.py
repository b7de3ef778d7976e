"""`asrbox transcribe` memory on a long file: does peak RSS stay bounded whatever the length?

Builds a WAV of `--hours` of looped evaluation speech (zh and en clips of ../shared/eval, each followed by a
pause of 1-4 s of faint noise) in /tmp, and a baseline WAV of `--baseline-minutes` of the same loop; runs
`asrbox transcribe` on each as a subprocess (history in a throwaway store, output to a throwaway folder) and
reports the child's peak RSS (ru_maxrss from os.wait4) and its wall time. Both runs use the same engine:

    .venv/bin/python scripts/bench_batch.py --hours 10                 # the real engine (hours of CPU)
    .venv/bin/python scripts/bench_batch.py --hours 10 --engine stub   # decode + VAD + chunking + store, no ASR

With the real engine the peak is set by the engine's batch (`--batch-size` windows of 30 s decoded together
with beam search), not by the length of the file: compare the two runs at the same batch size.

`--engine stub` replaces the ASR engine inside the child with one that returns a transcript of about 2.5
words a second for each chunk at once, so that a 10 h file runs in minutes; everything else is the real
command. The stub exists only here (this script patches `daemon.asr.engine.load_engine` in the child it
starts); the `asrbox` command has no such option.

Exit status 1 when the long file's peak RSS is over `--max-mb` (default 600).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from benchlib import EVAL, ROOT, clean_env

WORK = Path(tempfile.gettempdir()) / "asrbox-bench-batch"
SAMPLE_RATE = 16_000


def speech_loop(clips: int, seed: int) -> npt.NDArray[np.int16]:
    """The eval loop (scripts/evalspeech.py) as 16-bit PCM."""
    from evalspeech import speech_loop as loop

    return (np.clip(loop(EVAL, clips, seed), -1, 1) * 32767).astype("<i2")


def build_wav(path: Path, seconds: float, loop: npt.NDArray[np.int16]) -> Path:
    """`seconds` of the loop, written a loop at a time (the long file is never held in memory)."""
    if path.is_file() and path.stat().st_size == 44 + 2 * int(seconds * SAMPLE_RATE):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    left = int(seconds * SAMPLE_RATE)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        while left > 0:
            part = loop[:left]
            w.writeframes(part.tobytes())
            left -= part.size
    return path


def measure(wav: Path, engine: str, batch_size: int) -> dict[str, Any]:
    """Run `asrbox transcribe` on `wav` in a child; its peak RSS and wall time."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    env = clean_env(keep_cache=True, ASRBOX_STORE__PATH=str(run_dir / "store"))
    argv = ["transcribe", str(wav), "-o", str(run_dir / "out"), "--no-progress", "--batch-size", str(batch_size)]
    argv += ["--nice", "0"]  # measured at normal priority (the default yields to a live daemon)
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", engine, *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    err = child.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    out = next((run_dir / "out").glob("*.txt"), None)
    return {
        "file_h": round(wav.stat().st_size / 2 / SAMPLE_RATE / 3600, 3),
        "engine": engine,
        "exit": child.returncode,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "text_chars": len(out.read_text(encoding="utf-8")) if out else 0,
        "stderr": err.strip().splitlines()[-3:],
    }


class StubEngine:
    """Benchmark only: a transcript for every chunk at once (about 2.5 words per second of audio)."""

    def __init__(self, settings: Any) -> None:
        from daemon.transcript import EngineInfo

        self.info = EngineInfo("stub", "stub", "cpu", "none")

    def transcribe(self, audios: Sequence[Any], options: Any) -> list[Any]:
        from daemon.transcript import Segment, Transcript

        out = []
        for a in audios:
            seconds = a.size / SAMPLE_RATE
            segs = tuple(
                Segment(t, min(t + 5.0, seconds), "the quick brown fox jumps over the lazy dog again and again")
                for t in np.arange(0.0, seconds, 5.0)
            )
            out.append(Transcript(" ".join(s.text for s in segs), "en", 1.0, segs))
        return out

    def close(self) -> None:
        pass


def child(engine: str, argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    if engine == "stub":
        import daemon.asr.engine

        daemon.asr.engine.load_engine = StubEngine
    from daemon.cli import main

    return main(argv)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=10.0)
    ap.add_argument("--baseline-minutes", type=float, default=10.0)
    ap.add_argument("--engine", choices=("real", "stub"), default="real")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-mb", type=float, default=600.0)
    ap.add_argument("--clips", type=int, default=16, help="eval clips in the loop")
    args = ap.parse_args()

    loop = speech_loop(args.clips, seed=7)
    print(f"loop: {loop.size / SAMPLE_RATE:.1f} s of speech and pauses", file=sys.stderr)
    WORK.mkdir(parents=True, exist_ok=True)
    base = build_wav(WORK / f"speech-{args.baseline_minutes:g}min.wav", args.baseline_minutes * 60, loop)
    long = build_wav(WORK / f"speech-{args.hours:g}h.wav", args.hours * 3600, loop)
    results = [measure(base, args.engine, args.batch_size), measure(long, args.engine, args.batch_size)]
    for r in results:
        print(json.dumps(r, ensure_ascii=False))
    b, lg = results
    verdict = "ok" if lg["exit"] == 0 and lg["peak_rss_mb"] <= args.max_mb else "FAIL"
    print(
        f"peak RSS: {b['peak_rss_mb']} MB for {b['file_h']} h, {lg['peak_rss_mb']} MB for {lg['file_h']} h "
        f"(+{lg['peak_rss_mb'] - b['peak_rss_mb']:.1f} MB; limit {args.max_mb:g} MB): {verdict}",
        file=sys.stderr,
    )
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
