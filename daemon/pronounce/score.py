"""Align what was heard with the target and score it.

Chinese is compared per character, with pinyin and tone (pypinyin, read in context): a different character
with the same syllable and tone counts as right (it sounds the same; ASR picked a homophone); the same
syllable with another tone is a `tone` issue; otherwise `initial`, `final` or `syllable`. English is
compared per word: a homophone by metaphone ("their"/"there") counts as right. Alignment is a Levenshtein
alignment over the units; missing units and extra ones both lower the score:

    score = 100 * right / (expected units + extra units)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from daemon.lang import HAN

_CJK = re.compile(f"[{HAN}]")
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c",
             "s", "y", "w")  # fmt: skip


@dataclass(frozen=True)
class Item:
    expected: str
    heard: str
    ok: bool
    issue: str | None  # None, "missing", "extra", "substituted", "tone", "initial", "final", "syllable"
    expected_pinyin: str | None = None
    heard_pinyin: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"expected": self.expected, "heard": self.heard, "ok": self.ok, "issue": self.issue}
        if self.expected_pinyin is not None or self.heard_pinyin is not None:
            d["expected_pinyin"] = self.expected_pinyin
            d["heard_pinyin"] = self.heard_pinyin
        return d


@dataclass(frozen=True)
class Result:
    target: str
    heard: str
    language: str
    score: int
    items: tuple[Item, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "heard": self.heard,
            "language": self.language,
            "score": self.score,
            "items": [i.as_dict() for i in self.items],
        }


def is_chinese(text: str) -> bool:
    return len(_CJK.findall(text)) * 2 >= len(re.sub(r"\W", "", text)) > 0


def _units(text: str, chinese: bool) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    if chinese:
        from daemon.text.script import convert_script

        return _CJK.findall(convert_script(text, "simplified"))
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def _tones(chars: list[str]) -> list[str]:
    from pypinyin import Style, lazy_pinyin

    out = lazy_pinyin("".join(chars), style=Style.TONE3, neutral_tone_with_five=True)
    return (
        out
        if len(out) == len(chars)
        else [lazy_pinyin(c, style=Style.TONE3, neutral_tone_with_five=True)[0] for c in chars]
    )


def _split(syllable: str) -> tuple[str, str, str]:
    tone = syllable[-1] if syllable[-1:].isdigit() else "5"
    base = syllable.rstrip("012345")
    initial = next((i for i in _INITIALS if base.startswith(i)), "")
    return initial, base[len(initial) :], tone


def _zh_compare(exp: str, heard: str, pe: str, ph: str) -> tuple[bool, str | None]:
    if exp == heard or pe == ph:
        return True, None
    ie, fe, _ = _split(pe)
    ih, fh, _ = _split(ph)
    if (ie, fe) == (ih, fh):
        return False, "tone"
    if fe == fh:
        return False, "initial"
    if ie == ih:
        return False, "final"
    return False, "syllable"


def _en_same(a: str, b: str) -> bool:
    if a == b:
        return True
    import jellyfish

    return len(a) > 2 and len(b) > 2 and jellyfish.metaphone(a) == jellyfish.metaphone(b)


def _align(exp: list[str], heard: list[str], same: Any) -> list[tuple[int | None, int | None]]:
    """Pairs (expected index or None, heard index or None) of a minimal edit alignment."""
    n, m = len(exp), len(heard)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = 0 if same(i - 1, j - 1) else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (0 if same(i - 1, j - 1) else 1):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


def score(target: str, heard: str, language: str | None = None) -> Result:
    chinese = language in ("zh", "yue") if language else is_chinese(target)
    exp, got = _units(target, chinese), _units(heard, chinese)
    items: list[Item] = []
    if chinese:
        pe, ph = _tones(exp), _tones(got)
        for i, j in _align(exp, got, lambda a, b: exp[a] == got[b] or pe[a] == ph[b]):
            if i is None:
                assert j is not None
                items.append(Item("", got[j], False, "extra", None, ph[j]))
            elif j is None:
                items.append(Item(exp[i], "", False, "missing", pe[i], None))
            else:
                ok, issue = _zh_compare(exp[i], got[j], pe[i], ph[j])
                items.append(Item(exp[i], got[j], ok, issue, pe[i], ph[j]))
    else:
        for i, j in _align(exp, got, lambda a, b: _en_same(exp[a], got[b])):
            if i is None:
                assert j is not None
                items.append(Item("", got[j], False, "extra"))
            elif j is None:
                items.append(Item(exp[i], "", False, "missing"))
            else:
                ok = _en_same(exp[i], got[j])
                items.append(Item(exp[i], got[j], ok, None if ok else "substituted"))
    right = sum(1 for it in items if it.ok)
    extra = sum(1 for it in items if it.issue == "extra")
    total = len(exp) + extra
    value = round(100 * right / total) if total else 0
    return Result(target, heard, "zh" if chinese else (language or "en"), value, tuple(items))
