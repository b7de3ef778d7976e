"""Pronunciation scoring: alignment units and issues, then real speech through the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import asrbox, eval_clip

from daemon.pronounce.score import score


def test_chinese_per_character_with_tone() -> None:
    r = score("你好世界", "你号是借")
    assert [i.issue for i in r.items] == [None, "tone", None, None]  # 世/是 and 界/借 sound the same
    assert r.items[1].as_dict() == {
        "expected": "好", "heard": "号", "ok": False, "issue": "tone",
        "expected_pinyin": "hao3", "heard_pinyin": "hao4",
    }  # fmt: skip
    assert r.score == 75


def test_chinese_issue_kinds() -> None:
    kinds = {i.expected: i.issue for i in score("四是十", "是四").items}
    assert kinds["十"] == "missing" or "missing" in kinds.values()
    assert score("老师", "脑师").items[0].issue == "initial"  # lao/nao
    assert score("山", "伤").items[0].issue == "final"  # shan/shang
    assert score("猫", "狗").items[0].issue == "syllable"


def test_english_per_word_missing_and_extra() -> None:
    r = score("ask not what your country can do for you", "ask not what you country can for you there")
    issues = [(i.expected, i.heard, i.issue) for i in r.items if not i.ok]
    assert issues == [("your", "you", "substituted"), ("do", "", "missing"), ("", "there", "extra")]
    assert r.score == round(100 * 7 / 10)
    assert score("their house", "there house").score == 100  # homophones by metaphone


def test_empty_and_punctuation() -> None:
    assert score("Hello, world!", "hello world").score == 100
    assert score("hello", "").score == 0


@pytest.mark.parametrize(
    ("own", "other"),
    [("zh_paddlespeech_zh", "zh_aishell1_BAC009S0724W0121"), ("en_jfk", "en_librispeech_1272-128104-0001")],
)
def test_real_speech_own_reference_high_other_low(own: str, other: str, env: dict[str, str], tmp_path: Path) -> None:
    wav, row = eval_clip(own)
    _, other_row = eval_clip(other)
    good = asrbox("pronounce", "score", "--target", row["text"], "--learner", "amy", str(wav), env=env)
    assert good.returncode == 0, good.stderr
    high = json.loads(good.stdout)
    assert high["score"] >= 80, high
    bad = asrbox("pronounce", "score", "--target", other_row["text"], "--learner", "amy", str(wav), env=env)
    low = json.loads(bad.stdout)
    assert low["score"] <= 30, low
    assert {"target", "heard", "score", "items"} <= set(low)
    out = asrbox("pronounce", "export", "--learner", "amy", "-f", "json", env=env)
    attempts = json.loads(out.stdout)
    assert [a["score"] for a in attempts] == [high["score"], low["score"]]
    csv_out = asrbox("pronounce", "export", "--learner", "nobody", env=env).stdout
    assert csv_out.splitlines() == ["\ufeffid,created_at,learner,session_id,language,target,heard,score,issues"]
