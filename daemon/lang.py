"""Language facts shared by the engines, the text pipeline and the tools: one definition of each."""

from __future__ import annotations

# Languages written without spaces between words (segment texts are joined without a separator).
NO_SPACE_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "my", "bo", "km"})
# Languages written in Chinese characters (script conversion, Chinese punctuation, Chinese ITN).
CHINESE_LANGUAGES = frozenset({"zh", "yue"})
# Languages written in CJK script (scored per character; hotword prompts in their own script).
CJK_LANGUAGES = frozenset({"zh", "yue", "ja"})
# Chinese characters, as the body of a regex character class.
HAN = "\u3400-\u9fff\uf900-\ufaff"
# Japanese kana (hiragana and katakana), as the body of a regex character class.
KANA = "\u3040-\u30ff"

# Languages of the FunASR family by model name (a lower-case part of it); other FunASR models: zh and en.
FUNASR_LANGUAGES = {"sensevoice": ("zh", "en", "yue", "ja", "ko"), "paraformer": ("zh", "en")}


def model_languages(engine: str, model: str) -> tuple[str, ...] | None:
    """The languages a loaded model recognises (ISO codes), or None when the box cannot know (a remote server)."""
    if engine == "whisper":
        from faster_whisper.tokenizer import _LANGUAGE_CODES  # a list of codes; no model is loaded

        return tuple(_LANGUAGE_CODES)
    if engine in ("funasr", "onnx"):
        low = model.lower()
        return next((langs for key, langs in FUNASR_LANGUAGES.items() if key in low), ("zh", "en"))
    return None
