"""Error rates for tests, with the scoring conventions of ../shared/eval/README.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parent.parent / "scripts" / "bench.py")
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench", bench)
_spec.loader.exec_module(bench)


def error_rate(ref: str, hyp: str, lang: str) -> float:
    r, h = bench.normalize(ref, lang), bench.normalize(hyp, lang)
    return float(bench.edit_distance(r, h)) / max(len(r), 1)
