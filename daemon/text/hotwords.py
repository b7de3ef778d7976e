"""Hotword correction: replace near-misses of listed terms with the term, independent of the engine.

This is the second of two layers (the first is the engine's own biasing, e.g. Whisper's prompt or Paraformer's
SeACo): it catches what biasing missed. Chinese compares pinyin syllables (homophones and near-homophones:
"丁丁" -> "钉钉", "通一千问" -> "通义千问"); English compares spelling and a phonetic key (metaphone:
"cooper netties" -> "Kubernetes"). Guards against false replacements:

- a window is replaced only when every syllable (Chinese) is a fuzzy match, or all but one for terms of four
  syllables and more (or of three, when the other two are the term's own characters and the odd one still
  sounds partly alike), and the overall similarity passes the threshold;
- two-syllable Chinese terms need identical toneless pinyin after fuzzy initials/finals;
- English needs the metaphone key and the spelling to agree, and never touches windows shorter than four
  letters or made only of common function words;
- text already equal to a listed term is never touched, and replacements never overlap.

Every replacement is returned (from, to, position) so callers can keep the uncorrected text beside it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from daemon.lang import HAN

log = logging.getLogger(__name__)


def _words(text: str) -> list[str]:
    return text.split()


# characters a term, a session name or a practice sentence must not hold: lone surrogates (cannot be encoded),
# C0/C1 controls (NUL, ESC ...), private-use characters (no meaning; ITN uses them internally) and bidi controls
# (they reorder what a reader sees)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\U000f0000-\U0010ffff"
                     "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # fmt: skip
_KINDS = {
    "Cc": "a control character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "a noncharacter",
}


def unsafe_character(text: str) -> str | None:
    """The first character `text` must not hold, described ("U+0000 (a control character)"); None if clean."""
    m = _UNSAFE.search(text)
    if m is None:
        return None
    ch = m.group(0)
    return f"U+{ord(ch):04X} ({_KINDS.get(unicodedata.category(ch), 'a bidi control')})"


def clean_text(text: str) -> str:
    """`text` in NFC without surrounding space; ValueError("contains U+...") for an unsafe character."""
    bad = unsafe_character(text)
    if bad is not None:
        raise ValueError(f"contains {bad}")
    return unicodedata.normalize("NFC", text).strip()


_CJK = re.compile(f"[{HAN}]")
# pairs speakers (and ASR) confuse: compared as the same sound
_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n"), ("h", "f"))
_FUZZY_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"), ("iang", "ian"), ("uang", "uan"))
_FUNCTION_WORDS = frozenset(
    _words(
        "a an and are as at be but by for from had has have he her his i in is it its me my no not of on or our "
        "she so that the their them they this to was we were what when which who will with you your"
    )
)


@dataclass(frozen=True)
class Replacement:
    original: str
    term: str
    start: int  # character offset in the text before correction
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"from": self.original, "to": self.term, "start": self.start, "score": round(self.score, 3)}


def _fuzzy(syllable: str) -> str:
    s = syllable.lower().replace("v", "u")  # pypinyin writes ü as v; as letters it is closest to u
    for long, short in _FUZZY_INITIALS:
        if s.startswith(long):
            s = short + s[len(long) :]
            break
    for long, short in _FUZZY_FINALS:
        if s.endswith(long):
            s = s[: -len(long)] + short
            break
    return s


def _ratio(a: str, b: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(a, b))


@lru_cache(maxsize=4096)
def _pinyin(text: str) -> tuple[str, ...]:
    """One toneless syllable per character (a non-Chinese character stands for itself); polyphones are read
    in context (pypinyin's phrase table: 重庆 -> chong qing)."""
    from pypinyin import lazy_pinyin

    out: list[str] = []
    for run in re.finditer(f"[{HAN}]+|[^{HAN}]+", text):
        chunk = run.group(0)
        syllables = lazy_pinyin(chunk) if _CJK.match(chunk) else list(chunk)
        out += syllables if len(syllables) == len(chunk) else [lazy_pinyin(c)[0] for c in chunk]
    return tuple(out)


@lru_cache(maxsize=4096)
def _metaphone(text: str) -> str:
    import jellyfish

    return str(jellyfish.metaphone(text))


def _letters(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


class HotwordCorrector:
    """`correct(text, terms)` -> (corrected text, replacements). Stateless; safe to share between threads."""

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = threshold

    def correct(self, text: str, terms: Iterable[str]) -> tuple[str, list[Replacement]]:
        """Never raises: on an internal failure the text comes back unchanged (one warning, traceback at DEBUG).
        Terms holding an unsafe character (see `unsafe_character`) are ignored."""
        try:
            return self._correct(text, [t.strip() for t in terms if unsafe_character(t) is None and t.strip()])
        except Exception as exc:  # any: a transcript must never be lost to a correction bug
            reason = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")[:200]
            log.warning("hotword correction skipped for one text (%s: %s)", type(exc).__name__, reason)
            log.debug("hotword correction failed on %r", text[:200], exc_info=True)
            return text, []

    def _correct(self, text: str, terms: list[str]) -> tuple[str, list[Replacement]]:
        if not text or not terms:
            return text, []
        found: list[Replacement] = []
        for term in sorted(set(terms), key=len, reverse=True):  # longer terms first
            matches = self._chinese(text, term) if _CJK.search(term) else self._english(text, term)
            for rep in matches:
                end = rep.start + len(rep.original)
                if all(end <= r.start or rep.start >= r.start + len(r.original) for r in found):
                    found.append(rep)
        if not found:
            return text, []
        found.sort(key=lambda r: r.start)
        out, pos = [], 0
        for r in found:
            out.append(text[pos : r.start])
            out.append(r.term)
            pos = r.start + len(r.original)
        out.append(text[pos:])
        return "".join(out), found

    # --- Chinese: pinyin syllables --------------------------------------------------------------------------
    def _chinese(self, text: str, term: str) -> list[Replacement]:
        n = len(term)
        if n < 2:
            return []
        want = [_fuzzy(s) for s in _pinyin(term)]
        have = [_fuzzy(s) for s in _pinyin(text)]
        found: list[Replacement] = []
        i = 0
        while i + n <= len(text):
            window = text[i : i + n]
            if window == term or not all(_CJK.match(c) or c == t for c, t in zip(window, term, strict=True)):
                i += 1
                continue
            sims = [1.0 if a == b else _ratio(a, b) for a, b in zip(have[i : i + n], want, strict=True)]
            misses = sum(1 for s in sims if s < 1.0)
            # one syllable may be off in terms of four and more; in a three-character term only when the
            # other two are the very characters of the term (慢动度 -> 慢动作), not just their sounds
            same_chars = sum(1 for c, t in zip(window, term, strict=True) if c == t)
            allowed = 1 if n >= 4 or (n == 3 and same_chars == 2) else 0
            score = sum(sims) / n
            # ... and the odd syllable must still sound partly alike (数据集 never becomes 数据库)
            floor, need = (0.3, self.threshold - 0.05) if n == 3 and same_chars == 2 else (0.5, self.threshold)
            if misses <= allowed and min(sims) >= floor and score >= need:
                found.append(Replacement(window, term, i, score))
                i += n
                continue
            i += 1
        return found

    # --- English: spelling + metaphone ----------------------------------------------------------------------
    def _english(self, text: str, term: str) -> list[Replacement]:
        key = _letters(term)
        if len(key) < 4:
            return []
        # words; a possessive 's is not part of the word (Quilter's -> compare "Quilter", keep the 's)
        words = [
            (m.start(), m.group(1)) for m in re.finditer(r"([A-Za-z0-9][A-Za-z0-9\-]*?)(?:'s)?(?![A-Za-z0-9'])", text)
        ]
        n = max(1, len(term.split()))
        sound = _metaphone(key)
        found: list[Replacement] = []
        i = 0
        while i < len(words):
            best: tuple[float, int] | None = None
            for size in sorted({max(1, n - 1), n, n + 1, n + 2}):
                score = (
                    self._english_score(text, words[i : i + size], key, sound, term) if i + size <= len(words) else 0
                )
                # the window must not hold a word that is no part of the term: dropping an edge word must cost
                shorter = [words[i + 1 : i + size], words[i : i + size - 1]] if size > 1 else []
                edges_belong = all(self._english_score(text, w, key, sound, term, True) < score for w in shorter)
                if score and edges_belong and (best is None or score > best[0]):
                    best = (score, size)
            if best is not None:
                chunk = words[i : i + best[1]]
                start, end = chunk[0][0], chunk[-1][0] + len(chunk[-1][1])
                found.append(Replacement(text[start:end], term, start, best[0]))
                i += best[1]
                continue
            i += 1
        return found

    def _english_score(
        self, text: str, chunk: list[tuple[int, str]], key: str, sound: str, term: str, exact_ok: bool = False
    ) -> float:
        """Similarity of a window of words to the term (0 = not a candidate)."""
        if not chunk:
            return 0.0
        span = text[chunk[0][0] : chunk[-1][0] + len(chunk[-1][1])]
        letters = _letters(span)
        if span == term or (letters == key and not (span.islower() and not term.islower())):
            # already right; a case difference counts only to give a proper noun its capitals
            return 1.0 if exact_ok else 0.0
        if letters == key + "s":
            return 0.0  # the term's plural or possessive
        if len(letters) < 4 or all(w.lower() in _FUNCTION_WORDS for _, w in chunk):
            return 0.0
        if abs(len(letters) - len(key)) > max(1, len(key) // 6):
            return 0.0
        spelled = _ratio(letters, key)
        phonetic = _ratio(_metaphone(letters), sound)
        ok = (phonetic == 1.0 and spelled >= 0.6) or (phonetic >= 0.75 and spelled >= 0.8)
        score = 0.5 * spelled + 0.5 * phonetic
        return score if ok and score >= self.threshold else 0.0


def load_terms(inline: Sequence[str], path: str | None) -> tuple[str, ...]:
    """The box's list: `text.hotwords` plus one term a line from `text.hotwords_file` (# starts a comment), in
    NFC. A term holding an unsafe character (NUL, a bidi control, ...) is dropped: one warning for all of them."""
    terms = [("text.hotwords", t) for t in inline]
    if path:
        from pathlib import Path

        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            terms.append((f"{path}:{n}", line.split("#", 1)[0]))
    kept: dict[str, None] = {}
    dropped: list[str] = []
    for where, term in terms:
        try:
            term = clean_text(term)
        except ValueError as exc:
            dropped.append(f"{where} {exc}")
            continue
        if term:
            kept[term] = None
    if dropped:
        log.warning("hotwords: %d term(s) dropped for unsafe characters: %s", len(dropped), "; ".join(dropped[:5]))
    return tuple(kept)
