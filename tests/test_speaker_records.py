"""Speaker names kept with file records (issue #14 leftovers): an enrolled voice found by `asrbox transcribe
--speakers` is stored as the record's name for its label (as /v1 and jobs do, through one function and one
transaction), `--csv-file` has the speaker column, `history export --speaker`, and every way a record is
deleted (history delete, retention) removes the names given to its labels. Real SQLite, real subprocesses, the
real speaker models (conftest's `speaker_models`) and eval clips.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import asrbox, eval_clip, join_clips, write_wav

from daemon.batch.transcribe import Outcome
from daemon.errors import StoreError
from daemon.output.formats import FileTranscript, TimedText
from daemon.settings import Settings, StoreSettings
from daemon.speakers.files import FileSpeakers, SpeakerRequest
from daemon.store import records as history
from daemon.store import speakers as sp
from daemon.store.db import Store
from daemon.store.retention import Retention

VOICE = "en_librispeech_1272-128104-0003"  # enrolled as "Mr A"
# A, B, A: LibriSpeech 1272 twice around Hi-Fi TTS 6097, 1.2 s apart
MEETING = ("en_librispeech_1272-128104-0001", "en_hifitts6097_astralplane_04_leadbeater_0040", VOICE)


def names_in_db(root: Path, record_id: str) -> list[tuple[str, str]]:
    """(label, name) rows the store keeps for the record, read with plain sqlite3."""
    db = sqlite3.connect(root / "asrbox.db")
    try:
        rows = db.execute(
            "SELECT label, name FROM speaker_names WHERE scope='record' AND scope_id=? ORDER BY label", (record_id,)
        ).fetchall()
    finally:
        db.close()
    return [(str(a), str(b)) for a, b in rows]


def transcript(names: dict[str, str]) -> FileTranscript:
    segments = (TimedText(0.0, 1.0, "hello there", "S1"), TimedText(1.0, 2.0, "general kenobi", "S2"))
    return FileTranscript(
        file="panel.wav",
        duration_s=2.0,
        language="en",
        text="hello there general kenobi",
        raw_text="hello there general kenobi",
        segments=segments,
        engine={"model": "m"},
        processing_s=0.5,
        speaker_names=names,
    )


# ---------------------------------------------------------------- one function, one transaction
def test_file_outcome_and_its_names_in_one_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        out = Outcome(Path("panel.wav"), transcript({"S2": "Obi-Wan"}), warning="short", engine_s=0.25)
        rid = history.save_file(store, out, "panel.wav", None)
        rec = store.get(rid)
        assert rec is not None and rec.status == "done" and rec.kind == "file"
        assert [s["speaker"] for s in rec.segments] == ["S1", "S2"] and rec.meta == {"warning": "short"}
        assert rec.engine == {"model": "m", "processing_s": 0.25} and rec.processing_s == 0.5
        assert names_in_db(tmp_path, rid) == [("S2", "Obi-Wan")]
        assert [r["id"] for r in history.page(store, history.RecordFilter(q="kenobi", speaker="Obi-Wan"), 5, None)[0]]
        failed = history.save_file(store, Outcome(Path("bad.wav"), error="cannot decode"), "bad.wav", None)
        bad = store.get(failed)
        assert bad is not None and bad.status == "failed" and bad.error == "cannot decode"
        # a name that cannot be stored fails the whole outcome: no record is left behind without it
        broken = Outcome(Path("x.wav"), transcript({"S1": {"not": "text"}}))  # type: ignore[dict-item]
        with pytest.raises(StoreError):
            history.save_file(store, broken, "x.wav", None)
        assert len(store.query()) == 2
    finally:
        store.close()


def test_deleting_a_record_deletes_its_names(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        keep = history.save_file(store, Outcome(Path("a.wav"), transcript({"S1": "Ms Li"})), "a.wav", None)
        gone = history.save_file(store, Outcome(Path("b.wav"), transcript({"S1": "Ms Li"})), "b.wav", None)
        sp.rename(store, "record", gone, "S2", "Mr Wu")
        assert history.delete(store, gone) == {"id": gone, "audio_deleted": False}
        assert names_in_db(tmp_path, gone) == [] and names_in_db(tmp_path, keep) == [("S1", "Ms Li")]
        other = history.save_file(store, Outcome(Path("c.wav"), transcript({"S2": "Mr Wu"})), "c.wav", None)
        assert store.delete(other) and names_in_db(tmp_path, other) == []
        assert history.page(store, history.RecordFilter(speaker="Mr Wu"), 5, None)[0] == []
    finally:
        store.close()


def test_retention_pruning_records_deletes_their_names(tmp_path: Path) -> None:
    """Live utterances whose audio retention deletes with the record (prune_records): the names given to their
    labels go too; a pending utterance is never touched."""
    store = Store(tmp_path)
    try:
        wav = write_wav(tmp_path / "a.wav", np.full(1600, 0.1, np.float32))
        ids = []
        for i in range(3):
            rel = f"audio/u{i}.wav"
            (tmp_path / "audio").mkdir(exist_ok=True)
            (tmp_path / rel).write_bytes(wav.read_bytes())
            rid = store.begin_live(
                session_id="s",
                audio_path=rel,
                started_at="2026-03-05T10:00:00.000Z",
                ended_at="2026-03-05T10:00:01.000Z",
                duration_s=0.1,
                speech_end_ts=0.0,
                audio_bytes=wav.stat().st_size,
            )
            if i < 2:
                store.finish(rid, language="en", raw_text="hi", text="hi", segments=[], engine={}, processing_s=0.1)
            sp.rename(store, "record", rid, "S1", f"name {i}")
            ids.append(rid)
        settings = StoreSettings(path=tmp_path, retention_days=1, prune_records=True, min_free_mb=0)
        status = Retention(store, settings).run(datetime.now(UTC) + timedelta(days=2))
        assert status.deleted_files == 2
        assert store.get(ids[0]) is None and store.get(ids[2]) is not None
        assert [names_in_db(tmp_path, r) for r in ids] == [[], [], [("S1", "name 2")]]
    finally:
        store.close()


def test_with_request_shares_the_models(speaker_models: Path) -> None:
    settings = Settings.model_validate({"speakers": {"models_dir": str(speaker_models)}})
    base = FileSpeakers(settings, SpeakerRequest())
    voice = sp.Voice("v1", "Ms Li", np.ones(192, np.float32), 5.0, "2026-03-05T10:00:00Z")
    mine = base.with_request(SpeakerRequest(3, 2, 4), [voice])
    assert mine.diarizer is base.diarizer and mine.step_s == base.step_s
    assert (mine.bounds.speakers, mine.bounds.min_speakers, mine.bounds.max_speakers) == (3, 2, 4)
    assert mine.voices == (voice,) and base.voices == ()
    assert base.bounds.speakers is None and base.bounds.max_speakers == settings.speakers.max_speakers
    assert base.with_request(SpeakerRequest(), ()).bounds == base.bounds


def test_damaged_speaker_models_leave_the_text_with_a_warning(speaker_models: Path, tmp_path: Path) -> None:
    """Models present but unloadable (damaged after the request was accepted, a job resumed after a restart):
    the transcriber is built without labels and says why on every file, instead of failing the files."""
    import shutil
    from types import SimpleNamespace

    from daemon.core.files import FileOptions, FileTranscription

    broken = Path(shutil.copytree(speaker_models, tmp_path / "speakers"))
    (broken / "campplus.onnx").write_bytes(b"not a model")
    settings = Settings.model_validate({"speakers": {"models_dir": str(broken)}, "store": {"path": str(tmp_path)}})
    store = Store(tmp_path / "store")
    try:
        worker = SimpleNamespace(engine=SimpleNamespace(info=None))  # not called: nothing is transcribed here
        app = SimpleNamespace(settings=settings, store=store, box_hotwords=(), worker=worker, text=None)
        files = FileTranscription(app)  # type: ignore[arg-type]
        runner = files.transcriber(FileOptions(speakers=SpeakerRequest()), interactive=True)
        assert runner.speakers is None and (runner.speaker_warning or "").startswith("speakers not labelled: ")
        assert files.transcriber(FileOptions(), interactive=True).speaker_warning is None
    finally:
        store.close()


# ---------------------------------------------------------------- the CLI end to end
@pytest.mark.model
def test_cli_keeps_the_voice_name_csv_export_and_delete(
    speaker_models: Path, env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "ASRBOX_SPEAKERS__MODELS_DIR": str(speaker_models)}
    root = Path(env["ASRBOX_STORE__PATH"])
    audio, _ = join_clips(list(MEETING), [1.2] * len(MEETING))
    meeting = write_wav(tmp_path / "meeting.wav", audio)
    solo = write_wav(tmp_path / "solo.wav", join_clips([MEETING[1]], [0.5])[0])
    r = asrbox("speakers", "enroll", "Mr A", str(eval_clip(VOICE)[0]), env=env)
    assert r.returncode == 0, r.stderr
    table = tmp_path / "batch.csv"
    r = asrbox("transcribe", "--speakers", "-l", "en", "--csv-file", str(table), str(meeting), str(solo), env=env)
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(table.read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["file", "start", "end", "speaker", "text"]
    by_file = {Path(f).name: {who for f2, _, _, who, _ in rows[1:] if f2 == f} for f, *_ in rows[1:]}
    assert "Mr A" in by_file["meeting.wav"] and by_file["solo.wav"] == {"S1"}, by_file
    store = Store(root)
    try:
        recs = {Path(x.source or "").name: x for x in store.query()}
    finally:
        store.close()
    rid = recs["meeting.wav"].id
    assert names_in_db(root, rid) == [("S1", "Mr A")]  # kept with the record, as /v1 and jobs keep it
    assert names_in_db(root, recs["solo.wav"].id) == []
    word = max((w.strip(".,?!") for w in (recs["meeting.wav"].text or "").split()), key=len)
    found = asrbox("history", "search", word, "--speaker", "Mr A", env=env)
    assert found.returncode == 0, found.stderr
    assert [line.split()[0] for line in found.stdout.splitlines()] == [rid[:8]]
    # export --speaker: a given name, a label, nobody; bad input one line
    for who, expected in (("Mr A", [rid]), ("S1", [rid, recs["solo.wav"].id]), ("Nobody", [])):
        out = asrbox("history", "export", "-f", "json", "--speaker", who, env=env)
        assert out.returncode == 0, out.stderr
        assert [d["id"] for d in json.loads(out.stdout)] == expected, who
    out = asrbox("history", "export", "--speaker", "Mr A", env=env)
    assert out.returncode == 0 and list(csv.reader(io.StringIO(out.stdout.lstrip("\ufeff"))))[1][0] == rid
    bad = asrbox("history", "export", "--speaker", "", env=env)
    assert bad.returncode == 64 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    # deleting the record deletes its names
    gone = asrbox("history", "delete", rid, env=env)
    assert gone.returncode == 0, gone.stderr
    assert names_in_db(root, rid) == []
    assert asrbox("history", "search", word, "--speaker", "Mr A", env=env).stdout == ""
