"""Post-processing of engine output into the text users read.

Order, per segment: Chinese to simplified (what the matchers and grammars read) -> Chinese full-width
punctuation -> hotword correction (layer 2; the engine's own biasing is layer 1) -> inverse text normalisation
-> the configured Chinese script. The engine's text is kept as `raw_text`; the pipeline's result is `text`;
hotword replacements are listed in the transcript's metadata (`hotwords`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from daemon.lang import CHINESE_LANGUAGES, HAN
from daemon.settings import TextSettings
from daemon.text.hotwords import HotwordCorrector, Replacement
from daemon.text.itn import Itn
from daemon.text.script import convert_script
from daemon.transcript import Segment, Transcript, join_texts

_CJK = f"[{HAN}]"
_FULLWIDTH = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；", ".": "。"}


def fullwidth_punctuation(text: str) -> str:
    """ASCII punctuation after a Chinese character becomes full-width; spaces between Chinese characters (how
    Whisper marks a pause in Chinese) become "，". Decimal points and English inside the text are untouched."""
    text = re.sub(rf"(?<={_CJK})\s*([,?!:;.])(?!\d)\s*", lambda m: _FULLWIDTH[m.group(1)], text)
    text = re.sub(rf"(?<={_CJK})\s+(?={_CJK})", "，", text)
    return re.sub(r"([，。？！：；])\s+", r"\1", text)


class TextPipeline:
    def __init__(self, settings: TextSettings) -> None:
        self.settings = settings
        self.itn = Itn()
        self.corrector = HotwordCorrector(settings.hotword_threshold)

    def warm(self) -> None:
        """Load the ITN grammars now (tens of ms), so the first final does not wait for them."""
        if self.settings.itn:
            self.itn.normalize("二零二五年", "zh")
            self.itn.normalize("twenty five", "en")

    def engine_hotwords(self, terms: Sequence[str]) -> tuple[str, ...]:
        """What the engine's own biasing (layer 1) gets: the terms, unless it is switched off."""
        return tuple(terms) if self.settings.hotword_biasing else ()

    def process(self, text: str, language: str, hotwords: Sequence[str] = ()) -> tuple[str, list[Replacement]]:
        s = self.settings
        chinese = language in CHINESE_LANGUAGES
        if chinese:
            text = convert_script(text, "simplified" if s.chinese_script != "as_is" else "as_is")
            if s.fullwidth_punctuation:
                text = fullwidth_punctuation(text)
        replaced: list[Replacement] = []
        if s.hotword_correction and hotwords:
            text, replaced = self.corrector.correct(text, hotwords)
        if s.itn:
            text = self.itn.normalize(text, language)
        if chinese and s.chinese_script == "traditional":
            text = convert_script(text, "traditional")
        return text.strip(), replaced

    def text(self, text: str, language: str, hotwords: Sequence[str] = ()) -> str:
        return self.process(text, language, hotwords)[0]

    def apply(self, transcript: Transcript, hotwords: Sequence[str] = ()) -> Transcript:
        """The transcript with every segment processed; the text is rebuilt from the segments."""
        lang = transcript.language
        segs: list[Segment] = []
        replaced: list[dict[str, object]] = []
        for s in transcript.segments:
            text, reps = self.process(s.text, lang, hotwords)
            segs.append(Segment(s.start, s.end, text))
            replaced += [r.as_dict() for r in reps]
        meta = dict(transcript.meta)
        if replaced:
            meta["hotwords"] = replaced
        return replace(transcript, segments=tuple(segs), text=join_texts([s.text for s in segs], lang), meta=meta)
