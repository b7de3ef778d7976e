"""Long test audio for the memory benchmarks: eval clips (zh and en) looped, each followed by 1-4 s of faint
noise, so a VAD finds utterances and pauses as in a meeting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent


def speech_loop(eval_dir: Path, clips: int, seed: int) -> npt.NDArray[np.float32]:
    """zh and en clips alternating, each followed by a pause of faint noise (16 kHz mono float32)."""
    sys.path.insert(0, str(ROOT))
    from daemon.audio.decode import SAMPLE_RATE, decode_file

    lines = (eval_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    picked = [r for r in rows if r["lang"] in ("zh", "en") and r["duration_s"] < 30][:clips]
    rng = np.random.default_rng(seed)
    parts = []
    for row in picked:
        parts.append(decode_file(eval_dir / row["path"]))
        pause = int(rng.uniform(1.0, 4.0) * SAMPLE_RATE)
        parts.append((rng.standard_normal(pause) * 0.002).astype(np.float32))
    return np.concatenate(parts)
