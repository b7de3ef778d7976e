"""Inverse text normalisation against the case table in tests/data/itn_cases.tsv (zh + en).

Targets (issue #6): at least 150 cases, at least 98% exactly right, and not one over-conversion (a `keep` case
changed). Real text without spoken numbers (the eval set's references) must come back unchanged.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from conftest import eval_rows

from daemon.text.itn import MAX_CHARS, Itn, parse_tags

TABLE = Path(__file__).parent / "data" / "itn_cases.tsv"


def cases() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            lang, kind, spoken, expected = line.split("\t")
            rows.append((lang, kind, spoken, expected))
    return rows


@pytest.fixture(scope="module")
def itn(tmp_path_factory: pytest.TempPathFactory) -> Itn:
    return Itn(tmp_path_factory.mktemp("itn-cache"))


def test_table_pass_rate_and_no_over_conversion(itn: Itn) -> None:
    rows = cases()
    assert len(rows) >= 150
    assert {lang for lang, *_ in rows} == {"zh", "en"}
    failed = [(lang, kind, s, e, got) for lang, kind, s, e in rows if (got := itn.normalize(s, lang)) != e]
    over = [f for f in failed if f[1] == "keep"]
    assert not over, f"over-converted: {over}"
    assert len(failed) / len(rows) <= 0.02, f"{len(failed)} of {len(rows)} wrong: {failed}"


def test_the_issue_examples(itn: Itn) -> None:
    assert itn.normalize("二零二五年三月五号", "zh") == "2025年3月5日"
    for fixed in ("一会儿", "一心一意", "听一听", "三心二意", "一五一十"):
        assert itn.normalize(f"我们{fixed}吧", "zh") == f"我们{fixed}吧"


def test_real_sentences_without_numbers_are_untouched(itn: Itn) -> None:
    numeral = re.compile(
        r"[零一二两三四五六七八九十百千万亿幺]|\b(one|two|three|four|five|six|seven|eight|nine|ten)\b", re.I
    )
    checked = 0
    for row in eval_rows():
        if row["lang"] in ("zh", "en") and not numeral.search(row["text"]):
            assert itn.normalize(row["text"], row["lang"]) == row["text"]
            checked += 1
    assert checked >= 15


def test_other_languages_pass_through(itn: Itn) -> None:
    assert itn.normalize("двадцать пять", "ru") == "двадцать пять"


def test_tag_parser_reads_escapes_and_glued_fields() -> None:
    tags = parse_tags('date { year: "2025" } char { value: "\\"" } decimal { integer_part: "2"fractional_part: "0" }')
    assert tags == [
        ("date", {"year": "2025"}),
        ("char", {"value": '"'}),
        ("decimal", {"integer_part": "2", "fractional_part": "0"}),
    ]


# --- odd text never raises (issue #11: a private-use character made the Chinese masking raise) ---------------

ODD = {
    "private use": "三点\ue000二十分",
    "private use, plane 15": "twenty \U000f0001 five",
    "lone surrogate": "二零二五年\ud800三月",
    "NUL": "三百\x00个 twenty\x00five",
    "bidi": "\u202e二十五\u202c and \u2067twenty five\u2069",
    "emoji": "三点二十😀 twenty five 👍🏽",
    "10k characters": "二十三 twenty five " * 600,
    "mixed scripts": "二十 двадцать twenty عشرون 二十歳 스물 twenty-one",
    "controls": "\x1b[31m三\x7f点\x85",
    "combining": "e\u0301\u0301\u0301 三" + "\u0301" * 50,
    "empty": "",
    "spaces": " \u3000\t\n",
}


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("text", ODD.values(), ids=ODD.keys())
def test_odd_text_never_raises(itn: Itn, text: str, lang: str) -> None:
    assert isinstance(itn.normalize(text, lang), str)


def test_private_use_characters_pass_through_and_masking_still_works(itn: Itn) -> None:
    # the placeholders for masked phrases must not collide with private-use characters of the text itself
    assert itn.normalize("\ue000二零二五年三月五号\ue001", "zh") == "\ue0002025年3月5日\ue001"
    assert itn.normalize("一五一十\ue000\ue001说了三百个", "zh") == "一五一十\ue000\ue001说了300个"
    assert itn.normalize("我们一会儿见\ue000", "zh") == "我们一会儿见\ue000"


def test_a_failure_returns_the_text_with_one_warning(itn: Itn, caplog: pytest.LogCaptureFixture) -> None:
    text = "二零二五年\ud800三月"  # the grammar cannot encode a lone surrogate
    with caplog.at_level(logging.DEBUG, logger="daemon.text.itn"):
        assert itn.normalize(text, "zh") == text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None and "UnicodeEncodeError" in warnings[0].getMessage()
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)  # the traceback, at DEBUG only
    assert itn.normalize("二零二五年三月五号", "zh") == "2025年3月5日"  # and the next text is fine


def test_runaway_text_is_left_alone(itn: Itn, caplog: pytest.LogCaptureFixture) -> None:
    text = "二十三" * (MAX_CHARS // 3 + 1)
    with caplog.at_level(logging.WARNING, logger="daemon.text.itn"):
        assert itn.normalize(text, "zh") == text
    assert len(caplog.records) == 1 and "characters" in caplog.records[0].getMessage()
