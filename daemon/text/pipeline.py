"""Post-processing of engine output into the text users read: Chinese script now; ITN and hotwords plug in here.

The engine's text is kept as `raw_text`; the pipeline's result is `text`.
"""

from __future__ import annotations

from dataclasses import replace

from daemon.asr.engine import Segment, Transcript, join_texts
from daemon.settings import TextSettings
from daemon.text.script import CHINESE_LANGUAGES, convert_script


class TextPipeline:
    def __init__(self, settings: TextSettings) -> None:
        self.settings = settings

    def text(self, text: str, language: str) -> str:
        if language in CHINESE_LANGUAGES:
            text = convert_script(text, self.settings.chinese_script)
        return text.strip()

    def apply(self, transcript: Transcript) -> Transcript:
        """The transcript with every segment processed; the text is rebuilt from the segments."""
        lang = transcript.language
        segs = tuple(Segment(s.start, s.end, self.text(s.text, lang)) for s in transcript.segments)
        return replace(transcript, segments=segs, text=join_texts([s.text for s in segs], lang))
