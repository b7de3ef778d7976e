"""FSMN-VAD memory over long listening: is RSS flat after warm-up?

Streams `--hours` of looped evaluation speech (zh and en clips of ../shared/eval, each followed by a pause of
1-4 s of faint noise) through FsmnVad.probs and the live Segmenter, in capture blocks of 100 ms split into
512-sample frames, as fast as it runs. RSS (VmRSS of /proc/self/status) is sampled every simulated 10 minutes;
the result compares RSS after the warm-up (the first 30 simulated minutes) with RSS at the end.

    .venv/bin/python scripts/bench_vad.py --hours 8                # the fix: growth must stay under 5%
    .venv/bin/python scripts/bench_vad.py --hours 2 --no-release   # baseline: the extractor keeps every frame

Exit status 1 when growth after warm-up reaches --max-growth percent (default 5).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import EVAL, emit_json, rss_mb  # noqa: E402
from evalspeech import speech_loop  # noqa: E402

from daemon.audio.decode import SAMPLE_RATE  # noqa: E402
from daemon.audio.fsmn_vad import FsmnVad  # noqa: E402
from daemon.audio.segmenter import Segmenter, SpeechEnded  # noqa: E402
from daemon.audio.vad import FrameSplitter  # noqa: E402
from daemon.settings import VadSettings  # noqa: E402

BLOCK = 1600  # 100 ms capture blocks, as the live source delivers them
SAMPLE_EVERY_S = 600
WARMUP_S = 1800


class _KeepFrames:
    """Baseline only: the behaviour before the fix, an extractor that never releases a frame."""

    def __init__(self, fbank: Any) -> None:
        self._fbank = fbank

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fbank, name)

    def pop(self, n: int) -> None:
        pass


def run(hours: float, release: bool, loop: npt.NDArray[np.float32]) -> dict[str, Any]:
    vad = FsmnVad()
    if not release:
        vad._fbank = _KeepFrames(vad._fbank)
    seg = Segmenter(VadSettings(engine="fsmn", threshold=0.7), vad.frame_samples)
    splitter = FrameSplitter(vad.frame_samples)
    total = int(hours * 3600 * SAMPLE_RATE)
    samples: list[tuple[float, float]] = [(0.0, rss_mb())]
    utterances, pos, t0 = 0, 0, time.perf_counter()
    next_sample = SAMPLE_EVERY_S * SAMPLE_RATE
    while pos < total:
        start = pos % loop.size
        block = loop[start : start + BLOCK]
        pos += block.size
        frames = splitter.push(block)
        if frames.size:
            for frame, prob in zip(frames, vad.probs(frames), strict=True):
                utterances += sum(isinstance(ev, SpeechEnded) for ev in seg.push(frame, float(prob)))
        if pos >= next_sample:
            samples.append((pos / SAMPLE_RATE / 60, rss_mb()))
            print(f"  {samples[-1][0]:6.0f} min  RSS {samples[-1][1]:7.1f} MB", flush=True)
            next_sample += SAMPLE_EVERY_S * SAMPLE_RATE
    wall = time.perf_counter() - t0
    warm = next(mb for minute, mb in samples if minute >= WARMUP_S / 60) if hours * 3600 > WARMUP_S else samples[0][1]
    end = samples[-1][1]
    return {
        "release": release,
        "hours": hours,
        "utterances": utterances,
        "wall_s": round(wall, 1),
        "rtf": round(wall / (total / SAMPLE_RATE), 4),
        "rss_start_mb": round(samples[0][1], 1),
        "rss_after_warmup_mb": round(warm, 1),
        "rss_end_mb": round(end, 1),
        "growth_pct": round(100 * (end - warm) / warm, 2),
        "samples": [(round(m), round(mb, 1)) for m, mb in samples],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--no-release", action="store_true", help="baseline: keep every fbank frame (before the fix)")
    ap.add_argument("--eval", type=Path, default=EVAL)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-growth", type=float, default=5.0, help="percent after warm-up (exit 1 above)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    loop = speech_loop(args.eval, args.clips, args.seed)
    print(f"loop: {loop.size / SAMPLE_RATE:.0f} s of speech and pauses; {args.hours} h, release={not args.no_release}")
    result = run(args.hours, not args.no_release, loop)
    print(
        f"RSS after warm-up {result['rss_after_warmup_mb']} MB, at the end {result['rss_end_mb']} MB: "
        f"{result['growth_pct']:+.2f}% ({result['utterances']} utterances, {result['wall_s']} s, RTF {result['rtf']})"
    )
    emit_json(result, args.json, echo=False)
    return 0 if result["growth_pct"] < args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
