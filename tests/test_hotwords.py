"""Hotwords: the correction layer (pinyin / phonetic near-misses), its guards, and the text pipeline around it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.settings import TextSettings, load_settings
from daemon.text.hotwords import HotwordCorrector, Replacement, clean_text, load_terms, unsafe_character
from daemon.text.pipeline import TextPipeline, fullwidth_punctuation
from daemon.transcript import Segment, Transcript

TERMS = ["钉钉", "通义千问", "Kubernetes", "ChatGPT", "慢动作", "数据库"]


@pytest.fixture(scope="module")
def fix() -> HotwordCorrector:
    return HotwordCorrector(0.8)


@pytest.mark.parametrize(
    ("heard", "want"),
    [
        ("我们用丁丁开会", "我们用钉钉开会"),  # homophone
        ("问一下通一千问吧", "问一下通义千问吧"),  # one syllable off in four
        ("我们公司的同意千问模型", "我们公司的通义千问模型"),  # tone and character differ, sound the same
        ("接一个慢动度", "接一个慢动作"),  # two of three characters right, the third partly alike
        ("we asked chat gpt about it", "we asked ChatGPT about it"),  # split into two words
        ("deploy it on cubernetes today", "deploy it on Kubernetes today"),
    ],
)
def test_near_misses_become_the_term(fix: HotwordCorrector, heard: str, want: str) -> None:
    text, reps = fix.correct(heard, TERMS)
    assert text == want
    assert reps and all(r.term in TERMS for r in reps)
    assert heard[reps[0].start : reps[0].start + len(reps[0].original)] == reps[0].original


@pytest.mark.parametrize(
    "text",
    [
        "今天天气不错，我们去公园散步",
        "通知大家明天开会",  # shares a syllable with 通义千问, not enough
        "我们的数据集很大",  # 数据集 is not 数据库: two characters alike, the third sounds different
        "the cat sat on the mat and nobody cared",
        "we used the chat feature",
        "钉钉和通义千问都在",  # already right: untouched, nothing reported
        "Kubernetes and ChatGPT",
    ],
)
def test_no_false_replacements(fix: HotwordCorrector, text: str) -> None:
    assert fix.correct(text, TERMS) == (text, [])


def test_single_characters_and_tiny_words_are_never_terms(fix: HotwordCorrector) -> None:
    assert fix.correct("他是一个人", ["仁"]) == ("他是一个人", [])
    assert fix.correct("go to bed", ["Go"]) == ("go to bed", [])


def test_pipeline_keeps_raw_and_lists_replacements() -> None:
    pipe = TextPipeline(TextSettings())
    t = Transcript(
        text="我们用丁丁开会 二零二五年三月五号见",
        language="zh",
        language_prob=1.0,
        segments=(Segment(0.0, 2.0, "我们用丁丁开会 二零二五年三月五号见"),),
    )
    out = pipe.apply(t, ["钉钉"])
    assert out.text == "我们用钉钉开会，2025年3月5日见"
    assert out.meta["hotwords"] == [{"from": "丁丁", "to": "钉钉", "start": 3, "score": 1.0}]
    assert t.text == "我们用丁丁开会 二零二五年三月五号见"  # the engine's transcript is not changed


def test_layers_switch_off() -> None:
    off = TextPipeline(TextSettings(hotword_correction=False, hotword_biasing=False, itn=False))
    assert off.text("我们用丁丁开会", "zh", ["钉钉"]) == "我们用丁丁开会"
    assert off.engine_hotwords(["钉钉"]) == ()
    on = TextPipeline(TextSettings())
    assert on.engine_hotwords(["钉钉"]) == ("钉钉",)


def test_traditional_script_after_itn() -> None:
    pipe = TextPipeline(TextSettings(chinese_script="traditional"))
    # the grammar reads simplified numerals: 兩 and 萬 in the engine's output still convert
    assert pipe.text("會議有兩萬三千人", "zh") == "會議有23000人"


def test_fullwidth_punctuation() -> None:
    assert fullwidth_punctuation("你好, 今天天气不错. 对吗?") == "你好，今天天气不错。对吗？"
    assert fullwidth_punctuation("我有 3.5 公斤") == "我有 3.5 公斤"  # a decimal point stays
    assert fullwidth_punctuation("用 Python, 很好") == "用 Python, 很好"  # after English: unchanged
    assert fullwidth_punctuation("周末要不要去露营 最近天气超舒服") == "周末要不要去露营，最近天气超舒服"


def test_terms_from_config_and_file(tmp_path: Path) -> None:
    f = tmp_path / "terms.txt"
    f.write_text("钉钉\n# a comment\n通义千问  # inline comment\n\n钉钉\n", encoding="utf-8")
    assert load_terms(["asrbox"], str(f)) == ("asrbox", "钉钉", "通义千问")
    cfg = tmp_path / "asrbox.toml"
    cfg.write_text(f'[text]\nhotwords = ["Kubernetes"]\nhotwords_file = "{f}"\n', encoding="utf-8")
    assert load_settings(cfg, {}).text.terms() == ("Kubernetes", "钉钉", "通义千问")
    cfg.write_text(f'[text]\nhotwords_file = "{tmp_path / "missing.txt"}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="hotwords_file"):
        load_settings(cfg, {})


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Nor is Mr. Quilter's manner", "Quilter"),  # a possessive is the term already
        ("Nor is Mr. Quilters manner", "Quilter"),  # and so is a plural
        ("4, Queen of Clubs", "Queen of Clubs"),  # a neighbouring word is never swallowed
        ("speak to the voice assistants at home", "voice assistants"),
        ("the Hardy Pioneer came", "hardy pioneer"),  # case alone never changes towards lower case
    ],
)
def test_words_around_a_correct_term_are_kept(fix: HotwordCorrector, text: str, term: str) -> None:
    assert fix.correct(text, [term]) == (text, [])


def test_a_proper_noun_gets_its_capitals(fix: HotwordCorrector) -> None:
    assert fix.correct("deploy on kubernetes", ["Kubernetes"])[0] == "deploy on Kubernetes"


def test_warm_loads_both_grammars_once() -> None:
    pipe = TextPipeline(TextSettings())
    pipe.warm()
    assert pipe.itn._zh is not None and pipe.itn._en is not None
    off = TextPipeline(TextSettings(itn=False))
    off.warm()
    assert off.itn._zh is None and off.itn._en is None


# --- odd text never raises; unsafe terms are ignored or dropped (issue #11) ----------------------------------

ODD = {
    "private use": "我们用丁丁\ue000开会",
    "lone surrogate": "丁\ud800丁 cuber\udfffnetes",
    "NUL": "\x00丁丁\x00 chat\x00gpt",
    "bidi": "\u202e丁丁\u202c \u2067cubernetes\u2069",
    "emoji": "丁丁😀 cubernetes 👍🏽",
    "10k characters": "我们用丁丁开会 deploy on cubernetes " * 300,
    "mixed scripts": "двадцать 丁丁 스물 cubernetes عشرون",
    "combining": "e\u0301" * 20 + "丁丁",
    "empty": "",
}


@pytest.mark.parametrize("text", ODD.values(), ids=ODD.keys())
def test_odd_text_never_raises(fix: HotwordCorrector, text: str) -> None:
    out, reps = fix.correct(text, [*TERMS, "钉\ud800钉", "\x00"])
    assert isinstance(out, str)
    for r in reps:
        assert text[r.start : r.start + len(r.original)] == r.original and r.term in TERMS


def test_terms_with_unsafe_characters_are_ignored(fix: HotwordCorrector) -> None:
    assert fix.correct("我们用丁丁开会", ["钉\u202e钉", "钉\ue000钉", "\ud800"]) == ("我们用丁丁开会", [])
    assert fix.correct("我们用丁丁开会", ["钉\u202e钉", "钉钉"])[0] == "我们用钉钉开会"


class _Broken(HotwordCorrector):
    def _chinese(self, text: str, term: str) -> list[Replacement]:
        raise RuntimeError("boom \ud800")


def test_a_failure_returns_the_text_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="daemon.text.hotwords"):
        assert _Broken().correct("我们用丁丁开会", ["钉钉"]) == ("我们用丁丁开会", [])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None and "RuntimeError: boom" in warnings[0].getMessage()
    warnings[0].getMessage().encode("utf-8")  # a log line that can be written
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)


def test_unsafe_terms_from_config_and_file_are_dropped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "terms.txt"
    f.write_text("钉钉\nbad\x00term\n\u202eKubernetes\n私\ue000有\nCafe\u0301\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="daemon.text.hotwords"):
        terms = load_terms(["asrbox", "x\x1by", " 通义千问 "], str(f))
    assert terms == ("asrbox", "通义千问", "钉钉", "Café")
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert "4 term(s) dropped" in msg and "U+0000" in msg and "U+202E" in msg and "U+E000" in msg
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="daemon.text.hotwords"):
        assert load_terms(["钉钉"], None) == ("钉钉",)
    assert not caplog.records  # clean lists: no warning


def test_unsafe_character_names_the_kind() -> None:
    assert unsafe_character("钉钉 Kubernetes 😀 é") is None
    assert unsafe_character("a\x00") == "U+0000 (a control character)"
    assert unsafe_character("\ud800") == "U+D800 (a lone surrogate)"
    assert unsafe_character("\U00100000") == "U+100000 (a private-use character)"
    assert unsafe_character("\u200e") == "U+200E (a bidi control)"
    assert clean_text("  Cafe\u0301\u3000") == "Café"
    with pytest.raises(ValueError, match=r"U\+061C \(a bidi control\)"):
        clean_text("\u061c")
