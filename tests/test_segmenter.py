from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import eval_clip

from daemon.audio.decode import SAMPLE_RATE, iter_decode
from daemon.audio.segmenter import Segmenter, SpeechEnded, SpeechStarted, segment_stream
from daemon.audio.vad import SileroVad
from daemon.settings import VadSettings

F = 512


def feed(seg: Segmenter, probs: list[float]) -> list[object]:
    events: list[object] = []
    for i, p in enumerate(probs):
        frame = np.full(F, i, dtype=np.float32)  # frame index as sample value: audio can be traced
        events += seg.push(frame, p)
    events += seg.flush()
    return events


def frames_for(ms: float) -> int:
    return int(ms * SAMPLE_RATE / 1000) // F


def test_one_utterance_with_preroll_and_postroll() -> None:
    s = VadSettings(pre_roll_ms=96, post_roll_ms=64, min_silence_ms=320, min_speech_ms=100)
    seg = Segmenter(s, F)
    probs = [0.0] * 20 + [0.9] * 30 + [0.0] * 20
    events = feed(seg, probs)
    assert isinstance(events[0], SpeechStarted)
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 1
    u = ends[0].utterance
    assert u.start == (20 - 3) * F  # 96 ms = 3 frames of pre-roll
    assert u.last_voiced == 50 * F
    assert u.end == 50 * F + 64 * 16  # post-roll counted in samples
    assert u.audio.size == u.end - u.start
    assert u.audio[0] == 17.0  # first pre-roll frame is kept


def test_short_blip_dropped_and_counted() -> None:
    seg = Segmenter(VadSettings(min_speech_ms=250, min_silence_ms=200), F)
    events = feed(seg, [0.0] * 5 + [0.9] * 3 + [0.0] * 30)
    assert not [e for e in events if isinstance(e, SpeechEnded)]
    assert seg.dropped_short == 1


def test_hysteresis_keeps_utterance_through_dips() -> None:
    seg = Segmenter(VadSettings(threshold=0.5, min_silence_ms=200), F)
    probs = [0.9] * 20 + [0.4] * 20 + [0.9] * 20 + [0.0] * 20  # 0.4 > 0.5 - 0.15: still speech
    ends = [e for e in feed(seg, probs) if isinstance(e, SpeechEnded)]
    assert len(ends) == 1


def test_max_length_split_at_quietest_point() -> None:
    seg = Segmenter(VadSettings(max_utterance_s=3.0, min_silence_ms=500, pre_roll_ms=0), F)
    n = frames_for(3000)  # frames in 3 s
    probs = [0.9] * n
    probs[int(n * 0.7)] = 0.36  # a dip, above the end threshold: not an end of speech
    probs += [0.9] * 10 + [0.0] * 40
    ends = [e.utterance for e in feed(seg, probs) if isinstance(e, SpeechEnded)]
    assert len(ends) == 2
    assert ends[0].split and not ends[1].split
    assert ends[0].end == ends[1].start  # no audio lost or duplicated at the cut
    cut_frame = ends[0].end // F
    assert abs(cut_frame - int(n * 0.7)) <= 2
    assert all(u.duration_s <= 3.0 + 1e-9 for u in ends)


def test_real_silero_finds_the_14_utterances() -> None:
    path, _ = eval_clip("en_long_concat_hifitts6097")
    ref = json.loads(path.with_suffix(".segments.json").read_text())
    utts = list(segment_stream(iter_decode(path, block_s=1.7), SileroVad(), VadSettings()))
    assert len(utts) == len(ref) == 14
    for u, r in zip(utts, ref, strict=True):
        # each utterance covers its reference span (pre/post-roll allowed), within 0.5 s
        assert u.start_s <= r["start_s"] + 0.1 and u.start_s >= r["start_s"] - 0.5
        assert u.last_voiced / SAMPLE_RATE >= r["end_s"] - 0.3 and u.end_s <= r["end_s"] + 0.6


@pytest.mark.parametrize("block_s", [0.05, 0.5, 30.0])
def test_block_size_does_not_change_result(block_s: float) -> None:
    path, _ = eval_clip("en_jfk")
    base = [(u.start, u.end) for u in segment_stream(iter_decode(path), SileroVad(), VadSettings())]
    got = [(u.start, u.end) for u in segment_stream(iter_decode(path, block_s=block_s), SileroVad(), VadSettings())]
    assert got == base and base


def test_back_to_back_utterance_keeps_its_full_preroll() -> None:
    """Speech that resumes right after an end gets the whole pre-roll (the trailing silence), not one frame."""
    s = VadSettings(pre_roll_ms=96, post_roll_ms=0, min_silence_ms=320, min_speech_ms=100)
    seg = Segmenter(s, F)
    silence = frames_for(320) + 1  # exactly enough to end the first utterance
    probs = [0.9] * 20 + [0.0] * silence + [0.9] * 20 + [0.0] * 20
    ends = [e.utterance for e in feed(seg, probs) if isinstance(e, SpeechEnded)]
    assert len(ends) == 2
    second = ends[1]
    assert second.start == (20 + silence - 3) * F  # 3 frames (96 ms) of pre-roll, contiguous with speech
    assert second.audio[0] == 20 + silence - 3  # the traced frame index: the real preceding audio
    assert second.audio.size == second.end - second.start


def test_jump_ends_the_utterance_and_keeps_offsets_true() -> None:
    """A gap (idle, drops): the utterance in progress ends at its speech, later utterances carry true offsets
    and no audio from before the gap is used as pre-roll after it."""
    s = VadSettings(pre_roll_ms=96, post_roll_ms=64, min_silence_ms=320, min_speech_ms=100)
    seg = Segmenter(s, F)
    events: list[object] = []
    for i in range(30):  # 10 frames silence then speech, cut by the gap mid-speech
        events += seg.push(np.full(F, i, dtype=np.float32), 0.9 if i >= 10 else 0.0)
    gap_to = 10 * SAMPLE_RATE  # the stream continues 10 s in
    events += seg.jump(gap_to)
    first = [e.utterance for e in events if isinstance(e, SpeechEnded)]
    assert len(first) == 1 and first[0].end == 30 * F  # ended at the gap, post-roll limited to what was heard
    for i in range(40):
        events += seg.push(np.full(F, 100 + i, dtype=np.float32), 0.9 if 5 <= i < 25 else 0.0)
    events += seg.flush()
    ends = [e.utterance for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 2
    assert ends[1].start == gap_to + 2 * F  # pre-roll only from after the gap (2 silent frames were there)
    assert ends[1].audio[0] == 102 and ends[1].last_voiced == gap_to + 25 * F


def test_split_remainder_is_kept_however_short() -> None:
    """A word after a max-length cut is the end of real speech: kept, never dropped as too short."""
    seg = Segmenter(VadSettings(max_utterance_s=3.0, min_silence_ms=500, min_speech_ms=250, pre_roll_ms=0), F)
    n = frames_for(3000)
    probs = [0.9] * (n - 12) + [0.36] * 8 + [0.0] * 3 + [0.9] * 4  # the cut lands in the dip, one short word
    probs += [0.0] * 40
    events = feed(seg, probs)
    ends = [e.utterance for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 2 and ends[0].split and seg.dropped_short == 0
    assert ends[1].last_voiced >= ends[1].start and ends[1].audio.size == ends[1].end - ends[1].start


def test_too_short_utterance_is_discarded_with_an_event() -> None:
    seg = Segmenter(VadSettings(min_speech_ms=250, min_silence_ms=200), F)
    events = feed(seg, [0.0] * 5 + [0.9] * 3 + [0.0] * 30)
    assert [type(e).__name__ for e in events] == ["SpeechStarted", "SpeechDiscarded"]
