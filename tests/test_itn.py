"""Inverse text normalisation against the case table in tests/data/itn_cases.tsv (zh + en).

Targets (issue #6): at least 150 cases, at least 98% exactly right, and not one over-conversion (a `keep` case
changed). Real text without spoken numbers (the eval set's references) must come back unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, asrbox, eval_rows

from daemon.text import itn_fst
from daemon.text.itn import MAX_CHARS, Itn, parse_tags
from daemon.text.itn_fst import Grammar, token_string

TABLE = Path(__file__).parent / "data" / "itn_cases.tsv"


def cases() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            lang, kind, spoken, expected = line.split("\t")
            rows.append((lang, kind, spoken, expected))
    return rows


@pytest.fixture(scope="module")
def itn() -> Itn:
    return Itn()


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


# --- one runtime everywhere (issue #15): the shipped grammars on kaldifst, never pynini ----------------------

HAS_PYNINI = importlib.util.find_spec("pynini") is not None and importlib.util.find_spec("itn") is not None
# pynini and kaldifst each carry their own OpenFst: loaded into one process they hang or abort, so whatever uses
# pynini runs in a child process


def test_the_runtime_is_kaldifst_with_the_shipped_grammars(itn: Itn) -> None:
    assert itn.normalize("二零二五年三月五号", "zh") == "2025年3月5日"
    assert itn.normalize("twenty five", "en") == "25"
    assert "kaldifst" in sys.modules
    assert "pynini" not in sys.modules and "itn" not in sys.modules  # WeTextProcessing is a build tool only
    assert itn_fst.unavailable() is None


def test_token_string_orders_fields_as_the_verbalizer_expects() -> None:
    assert token_string("money", {"value": "3", "currency": "$"}) == 'money { currency: "$" value: "3" }'
    assert token_string("cardinal", {"value": 'a"b\\'}) == 'cardinal { value: "a\\"b\\\\" }'
    assert token_string("date", {"day": "5", "preserve_order": "true", "month": "3"}) == (
        'date { day: "5" preserve_order: "true" month: "3" }'
    )


@pytest.mark.skipif(not HAS_PYNINI, reason="WeTextProcessing/pynini: x86_64 only")
def test_shipped_grammars_are_what_wetextprocessing_builds() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_itn.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr


PYNINI_RUN = """
import json, sys
from itn.chinese.inverse_normalizer import InverseNormalizer as Zh
from itn.english.inverse_normalizer import InverseNormalizer as En
grammars, texts = sys.argv[1], json.load(sys.stdin)
procs = {"zh": Zh(cache_dir=grammars), "en": En(cache_dir=grammars)}
out = []
for lang, text, tokens in texts:
    p = procs[lang]
    out.append([p.tag(text), [p.verbalize(t) for t in tokens]])
json.dump(out, sys.stdout, ensure_ascii=False)
"""


@pytest.mark.skipif(not HAS_PYNINI, reason="WeTextProcessing/pynini: x86_64 only")
def test_kaldifst_tags_and_verbalizes_as_pynini_does() -> None:
    """The same grammar files under both runtimes: every tagging of the case table, the eval references and the
    odd texts, and the verbalizing of every token they hold, agree (equal-weight paths break ties alike)."""
    texts = [(lang, spoken) for lang, _, spoken, _ in cases()]
    texts += [(row["lang"], row["text"]) for row in eval_rows() if row["lang"] in ("zh", "en")]
    texts += [(lang, t) for t in ODD.values() for lang in ("zh", "en") if t.isprintable() and len(t) < 200]
    texts = [(lang, text if lang == "zh" else text.lower()) for lang, text in texts]  # as EnglishItn gives them
    grammars = {lang: Grammar(lang) for lang in ("zh", "en")}
    ours, asked = [], []
    for lang, text in texts:
        tagged = grammars[lang].tag(text)
        tokens = [(kind, f) for kind, f in parse_tags(tagged) if kind not in ("char", "word")]
        ours.append([tagged, [grammars[lang].verbalize(kind, f) for kind, f in tokens]])
        asked.append([lang, text, [token_string(kind, f) for kind, f in tokens]])
    r = subprocess.run(
        [sys.executable, "-c", PYNINI_RUN, str(itn_fst.GRAMMARS)],
        input=json.dumps(asked),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    theirs = json.loads(r.stdout)
    assert len(theirs) == len(ours) >= 200
    differ = [(t, o, p) for t, o, p in zip(texts, ours, theirs, strict=True) if o != p]
    assert not differ, differ[:5]
    assert sum(len(o[1]) for o in ours) >= 50  # the verbalizer was really exercised


def test_missing_grammars_turn_itn_off_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(itn_fst, "GRAMMARS", tmp_path)
    why = itn_fst.unavailable()
    assert why is not None and "zh_itn_tagger.fst" in why and "scripts/build-itn" in why
    fresh = Itn()
    with caplog.at_level(logging.WARNING, logger="daemon.text.itn"):
        assert fresh.normalize("二零二五年", "zh") == "二零二五年"
        assert fresh.normalize("twenty five", "en") == "twenty five"
    assert len(caplog.records) == 1 and "ITN is off" in caplog.records[0].getMessage()


CHECK_WITHOUT = """
import sys
from pathlib import Path
import daemon.text.itn_fst as f
if sys.argv[1] == "kaldifst":
    sys.modules["kaldifst"] = None  # as on a box where the wheel is not installed
else:
    f.GRAMMARS = Path(sys.argv[1])
from daemon.cli import main
sys.exit(main(["config", "check"]))
"""


@pytest.mark.parametrize("missing", ["kaldifst", "grammars"])
def test_config_check_says_why_itn_is_unavailable(missing: str, tmp_path: Path, env: dict[str, str]) -> None:
    arg = "kaldifst" if missing == "kaldifst" else str(tmp_path)
    r = subprocess.run([sys.executable, "-c", CHECK_WITHOUT, arg], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr  # the configuration itself is fine: the daemon runs without ITN
    warning = [line for line in r.stderr.splitlines() if "ITN is unavailable" in line]
    assert len(warning) == 1, r.stderr
    assert ("kaldifst package is not installed" if missing == "kaldifst" else "zh_itn_tagger.fst") in warning[0]
    assert "configuration ok" in r.stderr
    # and with everything in place it says nothing about ITN
    ok = asrbox("config", "check", env=env)
    assert ok.returncode == 0 and "ITN" not in ok.stderr, ok.stderr
