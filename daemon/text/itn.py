"""Inverse text normalisation: spoken numbers to written form ("二零二五年三月五号" -> "2025年3月5日").

Recognition is WeTextProcessing's (WeNet's weighted FST grammars, shipped compiled in daemon/text/grammars/ and
run on kaldifst on x86_64 and aarch64 alike: itn_fst.py); we read its tags and write the output ourselves where
its house style differs from what a Chinese or English reader expects: dates as 2025年3月5日, "下午3:30" keeping
the spoken time-of-day word, money as 100美元, "March 3" instead of "3 march". Two guards keep fixed expressions intact:

- Chinese: idioms and set phrases that contain numerals ("一五一十", "三三两两", "十几个") are masked before
  tagging and restored after, so no grammar weight can convert them.
- English: only runs of number words (with the few connectors numbers need: "and", "point", "percent", a
  currency, a month, "a.m.") are ever shown to the grammar; every other word is passed through untouched, and
  a lone small number or ordinal ("one of them", "first of all") stays a word.

The grammars load on first use, so a box with ITN switched off never loads them.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Protocol

from daemon.lang import CHINESE_LANGUAGES
from daemon.text.itn_fst import Grammar

log = logging.getLogger(__name__)

# --- token stream of WeTextProcessing ------------------------------------------------------------------------

_TOKEN = re.compile(r'(\w+) \{((?:\s*\w+: "(?:[^"\\]|\\.)*")*)\s*\}')
_FIELD = re.compile(r'(\w+): "((?:[^"\\]|\\.)*)"')


def parse_tags(tagged: str) -> list[tuple[str, dict[str, str]]]:
    """`date { year: "2025" } char { value: "开" }` -> [("date", {"year": "2025"}), ("char", {"value": "开"})]."""
    out: list[tuple[str, dict[str, str]]] = []
    for m in _TOKEN.finditer(tagged):
        fields = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _FIELD.findall(m.group(2))}
        out.append((m.group(1), fields))
    return out


class _Fst(Protocol):
    def tag(self, text: str) -> str: ...
    def verbalize(self, kind: str, fields: dict[str, str]) -> str: ...


# --- Chinese -------------------------------------------------------------------------------------------------

# Set phrases with numerals that must stay as spoken. The grammar keeps most of them already; these are the
# ones it would convert, plus common ones kept here so a grammar update cannot start converting them.
ZH_FIXED = (
    "一五一十", "三三两两", "三心二意", "一心一意", "一模一样", "七上八下", "九九归一", "一石二鸟", "接二连三",
    "乱七八糟", "一干二净", "三番五次", "四面八方", "五花八门", "千方百计", "千千万万", "一清二楚", "独一无二",
    "一举两得", "七十二变", "十之八九", "一二再", "三长两短", "说一不二", "一言九鼎", "九死一生", "百里挑一",
    "一朝一夕", "一五一十", "数一数二", "一会儿", "万一", "一些", "一下", "一起", "一样", "一定", "一直", "一切",
    "统一", "唯一", "一般", "一旦", "一边", "一点儿", "一方面", "一路上", "一律", "一致", "一共",
    "星期一", "周一", "礼拜一",
)  # fmt: skip
# "十几个", "几十个", "二三十个" are approximations: the grammar would write "10几个"
_ZH_APPROX = re.compile(r"[零一二两三四五六七八九十百千万]*几[十百千万]*[零一二两三四五六七八九十百千万]*")
# the time-of-day words the grammar folds into a time's a.m./p.m. (its data/time/noon.tsv), before an hour
_ZH_NOON = re.compile(r"(上午|早上|早晨|下午|晚上|傍晚)(?=[零一二两三四五六七八九十\d]+点)")
_ZH_CURRENCY = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑", "HK$": "港元", "₩": "韩元", "JP¥": "日元"}
# the grammar writes units as symbols; Chinese text keeps the unit word that was spoken (first one found)
_ZH_UNITS = {
    "km/h": ("公里每小时", "千米每小时"), "m²": ("平方米",), "km²": ("平方公里", "平方千米"), "m³": ("立方米",),
    "kg": ("公斤", "千克"), "g": ("克",), "mg": ("毫克",), "t": ("吨",), "km": ("公里", "千米"), "m": ("米",),
    "cm": ("厘米",), "mm": ("毫米",), "ml": ("毫升",), "l": ("升",), "L": ("升",), "h": ("小时", "钟头"),
    "min": ("分钟",), "s": ("秒", "秒钟"), "°": ("度",), "°C": ("摄氏度",), "kw": ("千瓦",), "kW": ("千瓦",),
}  # fmt: skip
_ZH_MEASURE = re.compile(r"^([-\d.~/]+)(.*)$")
_PUA, _PUA_END = 0xE000, 0xF8FF  # private-use code points stand in for masked phrases


def _strip_zero(v: str) -> str:
    return v.lstrip("0") or "0"


class ChineseItn:
    def __init__(self, fst: _Fst) -> None:
        self._fst = fst
        fixed = sorted(set(ZH_FIXED), key=len, reverse=True)
        self._fixed_pattern = re.compile("|".join(map(re.escape, fixed)) + "|" + _ZH_APPROX.pattern)

    def _mask(self, text: str) -> tuple[str, dict[str, str]]:
        """Each fixed phrase -> a private-use character the text does not hold itself (a private-use character
        in the input passes through untouched)."""
        kept: dict[str, str] = {}
        present = set(text)
        free = (c for c in map(chr, range(_PUA, _PUA_END + 1)) if c not in present)

        def hide(m: re.Match[str]) -> str:
            mark = next(free, None)
            if mark is None:  # thousands of phrases in one text: the rest stay as they are
                return m.group(0)
            kept[mark] = m.group(0)
            return mark

        return self._fixed_pattern.sub(hide, text), kept

    def normalize(self, text: str) -> str:
        if not re.search(r"[零一二两三四五六七八九十百千万亿点分之]", text):
            return text
        # 幺 is "one" when reading out digits (phone numbers, room numbers)
        text = re.sub(r"幺(?=[零一二三四五六七八九幺])|(?<=[零一二三四五六七八九])幺", "一", text)
        masked, kept = self._mask(text)
        noons = _ZH_NOON.findall(masked)
        consumed = 0
        out: list[str] = []
        for kind, f in parse_tags(self._fst.tag(masked)):
            if kind == "char":
                out.append(f.get("value", ""))
            elif kind == "date":
                out.append(self._date(f))
            elif kind == "time":
                if f.get("noon"):
                    # the grammar folded the spoken word (下午) into "p.m."; give back the word itself. It is the
                    # next one in the text after those the grammar left alone (早上八点: an hour-only time is not
                    # converted, its word stays in the output) and those earlier times took.
                    left = len(_ZH_NOON.findall("".join(out)))
                    if left + consumed < len(noons):
                        out.append(noons[left + consumed])
                    consumed += 1
                out.append(self._time(f))
            elif kind == "money":
                out.append(self._money(f))
            elif kind == "measure":
                out.append(self._measure(f.get("value", ""), text))
            else:
                out.append(self._fst.verbalize(kind, f))
        # the grammar groups long digit strings with spaces ("13581 88757"); Chinese text writes them solid
        result = re.sub(r"(?<=\d) (?=\d)", "", "".join(out))
        return re.sub("[\ue000-\uf8ff]", lambda m: kept.get(m.group(0), m.group(0)), result)

    @staticmethod
    def _measure(value: str, source: str) -> str:
        m = _ZH_MEASURE.match(value)
        if not m or m.group(2) not in _ZH_UNITS:
            return value
        words = _ZH_UNITS[m.group(2)]
        return m.group(1) + next((w for w in words if w in source), words[0])

    @staticmethod
    def _date(f: dict[str, str]) -> str:
        s = ""
        if "year" in f:
            y = f["year"]
            s += y if y.endswith("年") else y + "年"
        if "month" in f:
            s += _strip_zero(f["month"]) + "月"
        if "day" in f:
            s += _strip_zero(f["day"]) + "日"
        return s

    @staticmethod
    def _time(f: dict[str, str]) -> str:
        s = f"{_strip_zero(f.get('hour', '0'))}:{f.get('minute', '00').zfill(2)}"
        if f.get("second"):
            s += ":" + f["second"].zfill(2)
        return s

    @staticmethod
    def _money(f: dict[str, str]) -> str:
        value = f.get("value", "")
        if f.get("decimal"):
            value += "." + f["decimal"]
        cur = f.get("currency", "")
        if cur in _ZH_CURRENCY:
            return value + _ZH_CURRENCY[cur]
        return cur + value


def _words(text: str) -> list[str]:
    return text.split()


# --- English -------------------------------------------------------------------------------------------------

_EN_UNITS = _words(
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "billion trillion"
)
_EN_ORDINALS = _words(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth thirtieth fortieth fiftieth sixtieth "
    "seventieth eightieth ninetieth hundredth thousandth millionth"
)
_EN_MONTHS = _words("january february march april may june july august september october november december")
_EN_CONNECT = {
    "and", "point", "percent", "dollar", "dollars", "cent", "cents", "euro", "euros", "pound", "pounds",
    "yuan", "minus", "of", "the", "o'clock", "am", "pm", "a.m.", "p.m.", "a", *_EN_MONTHS,
}  # fmt: skip
_EN_NUMBER = set(_EN_UNITS) | set(_EN_ORDINALS)
_EN_SMALL = set(_EN_UNITS[:11]) | set(_EN_ORDINALS[:10])  # a lone "one", "first" stays a word
_EN_WORD = re.compile(r"\S+")
_EN_TRAIL = re.compile(r"^(.*?)([.,;:!?)\"']*)$")


def _en_core(word: str) -> str:
    core = _EN_TRAIL.match(word)
    base = core.group(1) if core else word
    low = base.lower()
    return low + "." if low in {"a.m", "p.m"} else low.rstrip(".")


class EnglishItn:
    def __init__(self, fst: _Fst) -> None:
        self._fst = fst

    def normalize(self, text: str) -> str:
        words = [(m.start(), m.end(), m.group(0)) for m in _EN_WORD.finditer(text)]
        if not any(_en_core(w) in _EN_NUMBER or "-" in w for _, _, w in words):
            return text
        out: list[str] = []
        pos = 0
        i = 0
        while i < len(words):
            j = i
            # a run: number words and connectors; punctuation ends it after the word that carries it
            while j < len(words):
                parts = [p for p in _en_core(words[j][2]).split("-") if p]
                if not parts or not all(p in _EN_NUMBER or p in _EN_CONNECT for p in parts):
                    break
                j += 1
                if _EN_TRAIL.match(words[j - 1][2]) and words[j - 1][2][-1:] in ",;:!?":
                    break
            run = words[i:j]
            # connectors at the edges belong to the sentence, not the number ("and", "of the" ...);
            # "a" stays only before hundred/thousand ("a hundred and twenty")
            while run and _en_core(run[0][2]) in _EN_CONNECT and not self._leading_ok(run):
                run = run[1:]
            while run and _en_core(run[-1][2]) in {"and", "of", "the", "a", "point", "minus"}:
                run = run[:-1]
            if run and self._worth(run):
                start, end = run[0][0], run[-1][1]
                out.append(text[pos:start])
                out.append(self._convert(text[start:end]))
                pos = end
            i = max(j, i + 1)
        out.append(text[pos:])
        return "".join(out)

    @staticmethod
    def _leading_ok(run: list[tuple[int, int, str]]) -> bool:
        first = _en_core(run[0][2])
        nxt = _en_core(run[1][2]) if len(run) > 1 else ""
        if first == "a":
            return nxt in {"hundred", "thousand", "million", "billion"}
        return first in _EN_MONTHS or first == "minus"

    @staticmethod
    def _worth(run: list[tuple[int, int, str]]) -> bool:
        numbers = [w for _, _, w in run if any(p in _EN_NUMBER for p in _en_core(w).split("-"))]
        if not numbers:
            return False
        return not (len(run) == 1 and _en_core(run[0][2]) in _EN_SMALL)

    def _convert(self, span: str) -> str:
        m = _EN_TRAIL.match(span)
        body, tail = (m.group(1), m.group(2)) if m else (span, "")
        spoken = re.sub(r"(?<=\w)-(?=\w)", " ", body)
        spoken = re.sub(r"(?i)\ba (hundred|thousand|million|billion)\b", r"one \1", spoken)
        starts_upper = spoken[:1].isupper()
        out: list[str] = []
        for kind, f in parse_tags(self._fst.tag(spoken.lower())):
            if kind == "word":
                out.append(f.get("value", ""))
            elif kind == "ordinal":
                n = int(f.get("integer", "0") or 0)
                out.append(_EN_ORDINALS[n - 1] if 0 < n <= 10 else self._fst.verbalize(kind, f))
            elif kind == "time":
                t = f"{_strip_zero(f.get('hour', '0'))}:{f.get('minute', '00').zfill(2)}"
                out.append(f"{t} {f['noon']}" if f.get("noon") else t)
            elif kind == "date":
                out.append(self._date(f))
            elif kind == "measure" and f.get("units") == "%":
                out.append(f.get("value", "") + "%")
            else:
                out.append(self._fst.verbalize(kind, f).strip())
        result = " ".join(x for x in out if x)
        if starts_upper and result[:1].isalpha():
            result = result[:1].upper() + result[1:]
        if result.endswith(".") and tail.startswith("."):
            tail = tail[1:]
        return result + tail

    @staticmethod
    def _date(f: dict[str, str]) -> str:
        parts = []
        if f.get("month"):
            month = f["month"].capitalize()
            parts.append(f"{month} {_strip_zero(f['day'])}" if f.get("day") else month)
        elif f.get("day"):
            parts.append(_strip_zero(f["day"]))
        if f.get("year"):
            return (", ".join(parts) + ", " if parts and f.get("day") else " ".join(parts) + " ").lstrip(" ") + f[
                "year"
            ]
        return " ".join(parts)


# --- the entry point -----------------------------------------------------------------------------------------

# longest text given to the grammars: an ASR segment (at most 30 s of speech) is a few hundred characters
MAX_CHARS = 2000


class Itn:
    """ITN by language; grammars load on first use (tens of ms each) and are shared by every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._zh: ChineseItn | None = None
        self._en: EnglishItn | None = None
        self._missing = False

    def normalize(self, text: str, language: str) -> str:
        """Never raises: on any failure the text comes back unchanged (one warning; the traceback at DEBUG)."""
        if self._missing or language not in (*CHINESE_LANGUAGES, "en") or not text:
            return text
        if len(text) > MAX_CHARS:  # ~2 ms a character on long texts: a runaway text would stall the worker
            log.warning("ITN skipped for one text of %d characters (at most %d)", len(text), MAX_CHARS)
            return text
        try:
            engine: ChineseItn | EnglishItn = self._chinese() if language in CHINESE_LANGUAGES else self._english()
        except Exception as exc:  # kaldifst or a grammar file missing: ITN is off for good, said once
            self._missing = True
            log.warning("ITN is off: %s: %s (asrbox config check says more)", type(exc).__name__, exc)
            return text
        try:
            return engine.normalize(text)
        except Exception as exc:  # any: a transcript must never be lost to a grammar or formatting bug
            reason = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")[:200]
            log.warning("ITN skipped for one text (%s: %s)", type(exc).__name__, reason)
            log.debug("ITN failed on %r", text[:200], exc_info=True)
        return text

    def _chinese(self) -> ChineseItn:
        with self._lock:
            if self._zh is None:
                self._zh = ChineseItn(Grammar("zh"))
                log.info("Chinese ITN grammar loaded")
            return self._zh

    def _english(self) -> EnglishItn:
        with self._lock:
            if self._en is None:
                self._en = EnglishItn(Grammar("en"))
                log.info("English ITN grammar loaded")
            return self._en
