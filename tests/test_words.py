"""Word times from Whisper and the split of a file's segments where the speaker changes (docs/speakers.md):
the split rule on synthetic words and turns, and a real back-to-back meeting through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import asrbox, join_clips, write_wav

from daemon.asr.whisper import merge_punctuation
from daemon.output.formats import TimedText
from daemon.speakers.diarize import Diarization, Turn
from daemon.speakers.files import split_by_speaker
from daemon.transcript import Word, join_words


def _diarization(*turns: tuple[float, float, int]) -> Diarization:
    n = max(t[2] for t in turns) + 1
    return Diarization(tuple(Turn(*t) for t in turns), n, np.zeros((n, 192), np.float32))


def _words(*items: tuple[float, float, str]) -> tuple[Word, ...]:
    return tuple(Word(*w) for w in items)


EN = _words(
    (0.0, 0.4, " Thank"),
    (0.4, 0.8, " you."),
    (0.9, 1.3, " Right,"),
    (1.3, 1.5, " I"),
    (1.5, 2.0, " agree."),
)
ZH = _words(
    (0.0, 0.3, "我们"), (0.3, 0.6, "开始"), (0.6, 0.9, "吧"), (1.0, 1.3, "好的"), (1.3, 1.6, "没"), (1.6, 1.9, "问题")
)


def test_split_at_the_word_where_the_speaker_changes_en() -> None:
    seg = TimedText(0.0, 2.1, "Thank you. Right, I agree.", words=EN)
    parts = split_by_speaker(seg, _diarization((0.0, 0.85, 0), (0.85, 2.1, 1)), str.strip)
    assert [(p.text, p.speaker) for p in parts] == [("Thank you.", "S1"), ("Right, I agree.", "S2")]
    assert (parts[0].start, parts[0].end, parts[1].start, parts[1].end) == (0.0, 0.8, 0.9, 2.1)
    assert [len(p.words) for p in parts] == [2, 3]


def test_split_zh_joins_without_spaces_and_runs_the_text_pipeline() -> None:
    seg = TimedText(0.0, 1.9, "我们开始吧，好的没问题", words=ZH)
    parts = split_by_speaker(seg, _diarization((0.0, 0.95, 1), (0.95, 2.0, 0)), lambda t: t + "。")
    assert [(p.text, p.speaker) for p in parts] == [("我们开始吧。", "S2"), ("好的没问题。", "S1")]


def test_one_short_word_stays_with_its_neighbour() -> None:
    seg = TimedText(0.0, 2.1, "Thank you. Right, I agree.", words=EN)
    # the diarization puts " I" (0.2 s) in another speaker's turn: no part of its own
    parts = split_by_speaker(seg, _diarization((0.0, 1.3, 0), (1.3, 1.5, 1), (1.5, 2.1, 0)), str.strip)
    assert [(p.text, p.speaker, p.start, p.end) for p in parts] == [("Thank you. Right, I agree.", "S1", 0.0, 2.1)]
    # a single word at the end of a segment said by the next speaker stays too
    parts = split_by_speaker(seg, _diarization((0.0, 1.5, 0), (1.5, 2.1, 1)), str.strip)
    assert [p.speaker for p in parts] == ["S1"] and parts[0].text == seg.text


def test_without_words_the_segment_takes_the_majority_label() -> None:
    seg = TimedText(0.0, 2.1, "Thank you. Right, I agree.")
    parts = split_by_speaker(seg, _diarization((0.0, 0.85, 0), (0.85, 2.1, 1)), str.strip)
    assert parts == [TimedText(0.0, 2.1, seg.text, "S2")]
    assert split_by_speaker(seg, Diarization((), 0, np.zeros((0, 192), np.float32)), str.strip)[0].speaker is None


def test_words_join_back_into_the_text_and_punctuation_sticks() -> None:
    assert join_words(EN) == "Thank you. Right, I agree." and join_words(ZH) == "我们开始吧好的没问题"
    got = merge_punctuation(
        [(Word(0, 1, " Hello"), 1), (Word(1, 1, ","), 1), (Word(1, 1, ' "'), 1), (Word(1, 2, "hi"), 2)]
    )
    assert got == [(Word(0, 1, " Hello,"), 2), (Word(1, 2, ' "hi'), 3)]


# A then B with no pause: LibriSpeech 1089, then Hi-Fi TTS 6097. Whisper decodes the end of A and the start of B
# as one segment ("of the brothels. But lazily, ..."), labelled as a whole without word times.
PAIR = ("en_librispeech_1089-134686-0001", "en_hifitts6097_shortstories_06_gaskell_0920")


@pytest.mark.model
def test_no_word_times_leave_the_segments_as_they_are() -> None:
    """An alignment that does not cover the tokens gives no words: the window keeps its segments (and text)."""
    from daemon.asr.whisper import _spread
    from daemon.transcript import Segment

    parts = [(Segment(0.0, 1.0, " hi there"), [1, 2]), (Segment(1.0, 2.0, " again"), [3])]
    assert _spread(parts, []) == parts
    spread = _spread(parts, [(Word(0.0, 0.4, " hi"), 1), (Word(0.4, 0.9, " there"), 1), (Word(1.1, 1.8, " again"), 1)])
    assert [[w.text for w in seg.words] for seg, _ in spread] == [[" hi", " there"], [" again"]]


def test_speaker_at_a_point_inside_a_turn_is_that_turns_speaker() -> None:
    """A zero-length word inside S1's long turn is S1's, even next to a short turn of S2."""
    d = Diarization((Turn(0.0, 20.0, 0), Turn(10.5, 11.0, 1)), 2, np.zeros((2, 192), np.float32))
    assert d.speaker_at(10.0, 10.0) == 0 and d.speaker_at(10.0, 10.02) == 0
    assert d.speaker_at(10.7, 10.7) in (0, 1) and d.speaker_at(25.0, 25.0) == 0  # nearest edge past the end


def test_speaker_at_by_bisection_matches_every_turn_looked_at() -> None:
    """`near` narrows the turns by bisection (long files have thousands): the same answers as a full scan."""
    rng = np.random.default_rng(5)
    starts = np.sort(rng.uniform(0, 3600, 2000))
    turns = tuple(Turn(float(a), float(a + rng.uniform(0.2, 30)), int(rng.integers(0, 4))) for a in starts)
    d = Diarization(turns, 4, np.zeros((4, 192), np.float32))
    for a in rng.uniform(-5, 3700, 300):
        b = float(a + rng.uniform(0, 20))
        talk = np.zeros(4)
        for t in turns:
            talk[t.speaker] += max(0.0, min(b, t.end) - max(float(a), t.start))
        if talk.max() > 0:
            assert d.speaker_at(float(a), b) == int(talk.argmax())
        assert set(d.near(float(a), b)) == {t for t in turns if t.start <= b and t.end >= a}


def test_back_to_back_speakers_never_share_a_segment(speaker_models: Path, env: dict[str, str], tmp_path: Path) -> None:
    audio, spans = join_clips(PAIR, (0.0, 0.5))
    path = write_wav(tmp_path / "pair.wav", audio)
    change = spans[0][1]
    env = {**env, "ASRBOX_SPEAKERS__MODELS_DIR": str(speaker_models)}
    r = asrbox("transcribe", "--speakers", "-f", "json", "-l", "en", str(path), env=env)
    assert r.returncode == 0, r.stderr
    segs = json.loads(r.stdout)["segments"]
    assert segs and all(s.get("words") is None for s in segs), segs  # word times are not exported
    labels = [s["speaker"] for s in segs]
    assert len(set(labels)) == 2 and labels == sorted(labels), segs  # S1 then S2, once each
    for s in segs:  # a segment lies on one side of the change (a word's time may be off by a little)
        first = s["speaker"] == labels[0]
        assert (s["end"] <= change + 0.5) if first else (s["start"] >= change - 0.5), (change, segs)
