"""Inverse text normalisation against the case table in tests/data/itn_cases.tsv (zh + en).

Targets (issue #6): at least 150 cases, at least 98% exactly right, and not one over-conversion (a `keep` case
changed). Real text without spoken numbers (the eval set's references) must come back unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import eval_rows

from daemon.text.itn import Itn, parse_tags

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
