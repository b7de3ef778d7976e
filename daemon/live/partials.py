"""Caption-friendly partial results: `stable` only ever grows, `unstable` may be revised.

A unit (a word, or a character in Chinese/Japanese) becomes stable once two consecutive hypotheses agree on
it. Once sent as stable it is never taken back, even if a later hypothesis disagrees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK = re.compile(f"[{_CJK_CLASS}]")
_SPLIT = re.compile(f"[{_CJK_CLASS}]\\s*|[^{_CJK_CLASS}]+")


def units(text: str) -> list[str]:
    """Words for spaced text, single characters for CJK; whitespace kept on the preceding unit."""
    out: list[str] = []
    for m in re.finditer(r"\S+\s*", text):
        token = m.group(0)
        if _CJK.search(token):
            out.extend(_SPLIT.findall(token))
        else:
            out.append(token)
    return out


def _norm(unit: str) -> str:
    return unit.strip().lower()


@dataclass
class PartialTracker:
    stable_units: list[str]
    previous: list[str]
    rev: int = 0

    @classmethod
    def new(cls) -> PartialTracker:
        return cls([], [])

    def update(self, hypothesis: str) -> tuple[str, str, int]:
        """Feed a new hypothesis for the whole utterance; return (stable, unstable, rev)."""
        hyp = units(hypothesis.strip())
        n = len(self.stable_units)
        # the units past the stable part (positionally: a revised stable unit is not shown twice)
        agree = 0
        while agree < min(n, len(hyp)) and _norm(hyp[agree]) == _norm(self.stable_units[agree]):
            agree += 1
        rest = hyp[n:]
        if agree == n:
            # promote what this and the previous hypothesis agree on
            prev_rest = self.previous[n:] if len(self.previous) >= n else []
            k = 0
            while k < min(len(rest), len(prev_rest)) - 1 and _norm(rest[k]) == _norm(prev_rest[k]):
                k += 1  # keep the last unit unstable: it is the one most likely to change
            self.stable_units.extend(rest[:k])
            rest = rest[k:]
        self.previous = hyp
        self.rev += 1
        return "".join(self.stable_units), "".join(rest), self.rev
