"""Long test audio for the memory benchmarks: eval clips (zh and en) looped, each followed by 1-4 s of faint
noise, so a VAD finds utterances and pauses as in a meeting."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from benchlib import ROOT, eval_rows


def speech_loop(eval_dir: Path, clips: int, seed: int) -> npt.NDArray[np.float32]:
    """zh and en clips alternating, each followed by a pause of faint noise (16 kHz mono float32)."""
    sys.path.insert(0, str(ROOT))
    from daemon.audio.decode import SAMPLE_RATE, decode_file

    picked = eval_rows(eval_dir / "manifest.jsonl", {"zh", "en"}, max_s=30)[:clips]
    rng = np.random.default_rng(seed)
    parts = []
    for row in picked:
        parts.append(decode_file(eval_dir / row["path"]))
        pause = int(rng.uniform(1.0, 4.0) * SAMPLE_RATE)
        parts.append((rng.standard_normal(pause) * 0.002).astype(np.float32))
    return np.concatenate(parts)
