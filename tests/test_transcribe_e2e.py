"""`asrbox transcribe` as a subprocess with the real embedded model on real speech."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EVAL, asrbox, eval_clip, eval_rows
from test_decode import wav_header, write_wav
from textmetrics import error_rate

from daemon.audio.decode import SAMPLE_RATE, decode_file
from daemon.audio.vad import SileroVad
from daemon.batch.transcribe import BatchTranscriber, Outcome
from daemon.settings import TextSettings, VadSettings
from daemon.store.db import Store
from daemon.text.pipeline import TextPipeline
from daemon.text.script import convert_script
from daemon.transcript import DecodeOptions, EngineInfo, Segment, Transcript

EN = ["en_jfk", "en_librispeech_1272-128104-0001", "en_librispeech_1995-1837-0001"]
ZH = ["zh_aishell1_BAC009S0764W0121", "zh_aishell1_BAC009S0724W0121"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    eval_rows()
    d = tmp_path_factory.mktemp("clips")
    for cid in EN + ZH:
        src, _ = eval_clip(cid)
        shutil.copy(src, d / src.name)
    return d


def test_json_output_accuracy_and_history(clips: Path, tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "out"
    r = asrbox("transcribe", str(clips), "--format", "json", "--output", str(out), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    assert "5 transcribed, 0 failed" in r.stderr
    docs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert len(docs) == 5
    for cid in EN + ZH:
        _, row = eval_clip(cid)
        d = docs[Path(row["path"]).stem]
        assert set(d) >= {"file", "duration_s", "language", "text", "segments", "engine", "processing_s"}
        assert d["language"] == row["lang"]
        assert abs(d["duration_s"] - row["duration_s"]) < 0.1
        assert d["segments"] and all(0 <= s["start"] <= s["end"] <= d["duration_s"] + 0.5 for s in d["segments"])
        assert d["engine"]["name"] == "whisper" and d["engine"]["device"] == "cpu"
        bound = 0.25 if row["lang"] == "en" else 0.45
        assert error_rate(row["text"], d["text"], row["lang"]) <= bound, (cid, d["text"])
        if row["lang"] == "zh":
            assert convert_script(d["text"], "simplified") == d["text"]  # simplified output by default
    # pooled English WER on clean clips
    edits = sum(
        error_rate(eval_clip(c)[1]["text"], docs[c.replace("en_", "en_", 1)]["text"], "en")
        * len(eval_clip(c)[1]["text"].split())
        for c in EN
    )
    words = sum(len(eval_clip(c)[1]["text"].split()) for c in EN)
    assert edits / words <= 0.10

    # history: every file is there, searchable, exportable
    r = asrbox("history", "list", env=env)
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 5
    r = asrbox("history", "search", "country", env=env)
    assert len(r.stdout.strip().splitlines()) == 1 and "en_jfk" in r.stdout
    r = asrbox("history", "search", "交易", env=env)
    assert len(r.stdout.strip().splitlines()) == 1
    rid = r.stdout.split()[0]
    r = asrbox("history", "show", rid, env=env)
    rec = json.loads(r.stdout)
    assert rec["status"] == "done" and rec["language"] == "zh" and rec["raw_text"]
    exp = tmp_path / "h.csv"
    r = asrbox("history", "export", "--format", "csv", "-o", str(exp), env=env)
    assert r.returncode == 0
    assert exp.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM (Excel)
    rows = list(csv.DictReader(io.StringIO(exp.read_text(encoding="utf-8-sig"))))
    assert len(rows) == 5 and {row["status"] for row in rows} == {"done"}
    r = asrbox("history", "export", "--format", "json", "--since", "2999-01-01", env=env)
    assert json.loads(r.stdout) == []
    r = asrbox("history", "delete", rid, env=env)
    assert r.returncode == 0
    assert asrbox("history", "search", "交易", env=env).stdout.strip() == ""

    # rerun: finished files are reused, not transcribed again
    r = asrbox(
        "transcribe", str(clips), "--format", "txt", "-o", str(tmp_path / "again"), "--no-progress", "-v", env=env
    )
    assert r.returncode == 0
    assert r.stderr.count("already transcribed") == 4  # the deleted one is redone
    assert len(asrbox("history", "list", env=env).stdout.strip().splitlines()) == 5


@pytest.mark.parametrize("fmt", ["txt", "srt", "vtt", "csv"])
def test_every_format_to_stdout(fmt: str, env: dict[str, str]) -> None:
    path, row = eval_clip("en_jfk")
    r = asrbox("transcribe", str(path), "--format", fmt, "--no-store", "--language", "en", env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    if fmt == "txt":
        assert error_rate(row["text"], out, "en") < 0.2
    elif fmt == "srt":
        assert out.startswith("1\n00:00:0") and " --> " in out
    elif fmt == "vtt":
        assert out.startswith("WEBVTT\n\n00:00:")
    else:
        assert out.startswith("\ufeff")  # UTF-8 with a BOM (Excel)
        rows = list(csv.reader(io.StringIO(out.removeprefix("\ufeff"))))
        assert rows[0] == ["start", "end", "text"] and len(rows) >= 2
        assert float(rows[-1][1]) <= row["duration_s"] + 0.5
    assert not (Path(env["ASRBOX_STORE__PATH"]) / "asrbox.db").exists()  # --no-store


def test_bad_inputs_do_not_stop_the_batch(tmp_path: Path, env: dict[str, str]) -> None:
    d = tmp_path / "in"
    d.mkdir()
    good, _ = eval_clip("en_jfk")
    shutil.copy(good, d / "good.wav")
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("not audio\n" * 50)
    (d / "zero.wav").write_bytes(wav_header(16000, 0))
    (d / "huge_rate.wav").write_bytes(wav_header(2_000_000_000, 3200) + b"\0" * 3200)
    (d / "trunc.wav").write_bytes(good.read_bytes()[:600])
    (d / "notes.txt").write_text("ignored: not an audio extension")
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    (empty_dir / "readme.md").write_text("x")
    r = asrbox(
        "transcribe",
        str(d),
        str(empty_dir),
        str(tmp_path / "missing.wav"),
        "-o",
        str(tmp_path / "o"),
        "--no-progress",
        env=env,
    )
    assert r.returncode == 1
    err = r.stderr
    assert "1 transcribed, 7 failed" in err
    for needle in (
        "empty.wav: error: empty file",
        "text.wav: error: not a readable audio",
        "zero.wav: error: contains no audio",
        "huge_rate.wav: error: unsupported sample rate",
        "trunc.wav: error: audio too short",
        "nothing: error: folder contains no audio",
        "missing.wav: error: no such file",
    ):
        assert sum(needle in line for line in err.splitlines()) == 1, needle
    assert "Traceback" not in err
    assert (tmp_path / "o" / "good.txt").read_text().strip()
    # failures are recorded too
    r = asrbox("history", "list", env=env)
    assert r.stdout.count("failed") == 5 and r.stdout.count("done") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path, env: dict[str, str]) -> None:
    p = tmp_path / "locked.wav"
    shutil.copy(eval_clip("en_jfk")[0], p)
    p.chmod(0)
    r = asrbox("transcribe", str(p), "--no-store", env=env)
    assert r.returncode == 1 and "permission denied" in r.stderr


def test_nothing_to_transcribe_and_usage_errors(tmp_path: Path, env: dict[str, str]) -> None:
    r = asrbox("transcribe", str(tmp_path), env=env)
    assert r.returncode == 66 and "no audio" in r.stderr
    r = asrbox("transcribe", "x.wav", "--format", "docx", env=env)
    assert r.returncode == 64 and len(r.stderr.strip().splitlines()) == 1
    r = asrbox("transcribe", str(eval_clip("en_jfk")[0]), "--model", str(tmp_path), "--no-store", env=env)
    assert r.returncode != 0 and "CTranslate2 Whisper model folder" in r.stderr
    assert "Traceback" not in r.stderr


def test_mixed_languages_each_detected(env: dict[str, str], tmp_path: Path) -> None:
    rows = {r["lang"]: r for r in eval_rows() if r["lang"] in ("es", "ru", "ja")}
    paths = [str(EVAL / r["path"]) for r in rows.values()]
    r = asrbox("transcribe", *paths, "--format", "json", "--no-store", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    langs = {Path(json.loads(line)["file"]).name: json.loads(line)["language"] for line in r.stdout.splitlines()}
    for lang, row in rows.items():
        assert langs[Path(row["path"]).name] == lang


def test_hotwords_both_layers_on_real_speech(env: dict[str, str]) -> None:
    """The embedded model hears 房地产 as 佛地产 and 中介协会 as 中间协会 in this clip. Biasing (the Whisper
    prompt) fixes both; correction alone fixes the near-homophone 中间 -> 中介 and says so; raw text is kept."""
    src, _ = eval_clip("zh_aishell1_BAC009S0724W0121")
    base = ("transcribe", str(src), "--no-store", "--no-progress", "-f", "json", "-o", "-")
    terms = ("--hotword", "房地产", "--hotword", "中介协会")

    plain = json.loads(asrbox(*base, env=env).stdout)
    assert "中介协会" not in plain["text"] and plain["hotwords"] == []

    both = json.loads(asrbox(*base, *terms, env=env).stdout)
    assert "房地产" in both["text"] and "中介协会" in both["text"]

    only_fix = json.loads(asrbox(*base, *terms, env={**env, "ASRBOX_TEXT__HOTWORD_BIASING": "false"}).stdout)
    assert "中介协会" in only_fix["text"]
    assert any(h["to"] == "中介协会" for h in only_fix["hotwords"])
    assert "中介协会" not in convert_script(only_fix["raw_text"], "simplified")


# ---------------------------------------------------------------------------- failures of one file, memory
class FakeEngine:
    """Says "hello" for every chunk; raises `error` for a batch holding a chunk of a file in `poison` (file
    indexes, as DecodeOptions.groups gives them). Records each call's size and how many arrays it was given
    earlier are still alive (the batch must not keep the audio of chunks already decoded)."""

    info = EngineInfo("fake", "fake", "cpu", "none")

    def __init__(self, poison: frozenset[int] = frozenset(), error: Exception | None = None, text: str = "hello"):
        self.poison = poison
        self.error = error or RuntimeError("CUDA out of memory\nwhile decoding")
        self.text = text
        self.sizes: list[int] = []
        self.stale_alive: list[int] = []
        self._given: list[weakref.ref[Any]] = []

    def transcribe(self, audios: Sequence[Any], options: DecodeOptions) -> list[Transcript]:
        gc.collect()
        self.stale_alive.append(sum(ref() is not None for ref in self._given))
        self._given += [weakref.ref(a) for a in audios]
        self.sizes.append(len(audios))
        assert options.groups is not None
        if self.poison & set(options.groups):
            raise self.error
        return [
            Transcript(f"{self.text} {g}", "en", 1.0, (Segment(0.0, a.size / SAMPLE_RATE, f"{self.text} {g}"),))
            for a, g in zip(audios, options.groups, strict=True)
        ]

    def close(self) -> None:
        pass


class FailingText(TextPipeline):
    """The real text pipeline, except that it raises on the text of one file."""

    def __init__(self, bad: str) -> None:
        super().__init__(TextSettings())
        self.bad = bad

    def apply(self, transcript: Transcript, hotwords: Sequence[str] = ()) -> Transcript:
        if transcript.text == self.bad:
            raise ValueError("private-use character U+E000")
        return super().apply(transcript, hotwords)


def long_speech(path: Path, seconds: float) -> Path:
    """A real WAV of eval speech with pauses, looped to about `seconds`."""
    clips = [decode_file(eval_clip(c)[0]) for c in EN]
    pause = np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    total = 0
    while total < seconds * SAMPLE_RATE:
        for c in clips:
            parts += [c, pause]
            total += c.size + pause.size
    return write_wav(path, np.concatenate(parts), SAMPLE_RATE)


def batch_run(
    tmp_path: Path, files: list[Path], engine: FakeEngine, text: TextPipeline | None = None, batch_size: int = 2
) -> tuple[list[Outcome], Store]:
    store = Store(tmp_path / "store")
    runner = BatchTranscriber(
        engine, SileroVad, VadSettings(), text or TextPipeline(TextSettings()), store, batch_size, language="en"
    )
    return list(runner.run(files)), store


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("speech")
    zh, _ = eval_clip(ZH[0])
    shutil.copy(zh, d / "c.wav")
    shutil.copy(eval_clip("en_jfk")[0], d / "poison.wav")
    return [long_speech(d / "a.wav", 150), d / "poison.wav", d / "c.wav"]


def test_engine_error_fails_only_that_file(tmp_path: Path, speech_files: list[Path]) -> None:
    engine = FakeEngine(poison=frozenset({1}))
    outcomes, store = batch_run(tmp_path, speech_files, engine)
    try:
        assert [o.path.name for o in outcomes] == ["a.wav", "poison.wav", "c.wav"]
        a, bad, c = outcomes
        assert a.transcript is not None and a.transcript.text.startswith("hello 0")
        assert c.transcript is not None and c.transcript.text == "hello 2"
        assert bad.transcript is None
        assert bad.error == "transcription failed: RuntimeError: CUDA out of memory while decoding"
        records = {Path(r.source or "").name: r for r in store.iter_all()}
        assert {n: r.status for n, r in records.items()} == {"a.wav": "done", "poison.wav": "failed", "c.wav": "done"}
        assert records["poison.wav"].error == bad.error
    finally:
        store.close()


def test_text_pipeline_error_fails_only_that_file(tmp_path: Path, speech_files: list[Path]) -> None:
    outcomes, store = batch_run(tmp_path, speech_files[1:], FakeEngine(), FailingText("hello 0"))
    try:
        bad, good = outcomes
        assert bad.error == "text processing failed: ValueError: private-use character U+E000"
        assert good.transcript is not None and good.transcript.text == "hello 1"
        assert sorted(r.status for r in store.iter_all()) == ["done", "failed"]
    finally:
        store.close()


def test_batch_holds_audio_of_pending_chunks_only(tmp_path: Path, speech_files: list[Path]) -> None:
    """150 s of speech in 30 s chunks, batches of 2: no call finds the audio of an earlier call still alive."""
    engine = FakeEngine()
    outcomes, store = batch_run(tmp_path, speech_files[:1], engine, batch_size=2)
    store.close()
    assert outcomes[0].transcript is not None and len(outcomes[0].transcript.segments) >= 5
    assert len(engine.sizes) >= 3 and max(engine.sizes) <= 2
    assert engine.stale_alive == [0] * len(engine.sizes)


def test_interrupted_run_leaves_no_pending_record(tmp_path: Path, speech_files: list[Path]) -> None:
    store = Store(tmp_path / "store")
    runner = BatchTranscriber(FakeEngine(), SileroVad, VadSettings(), TextPipeline(TextSettings()), store, 8)
    try:
        run = runner.run(speech_files)
        next(run)  # the consumer stops after the first file (Ctrl-C, an output error)
        run.close()
        got = [(Path(r.source or "").name, r.status, r.error) for r in store.iter_all()]
        assert got == [
            ("a.wav", "done", None),
            ("poison.wav", "failed", "interrupted before it was transcribed"),
            ("c.wav", "failed", "interrupted before it was transcribed"),
        ]
    finally:
        store.close()


FAKE_CLI = """
import sys
sys.path.insert(0, {tests!r})
import daemon.asr.engine
from test_transcribe_e2e import FakeEngine
daemon.asr.engine.load_engine = lambda settings: FakeEngine(poison=frozenset({{1}}))
from daemon.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_engine_error_one_line_and_exit_1(tmp_path: Path, speech_files: list[Path], env: dict[str, str]) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(FAKE_CLI.format(tests=str(Path(__file__).parent)))
    files = [str(speech_files[2]), str(speech_files[1]), str(speech_files[2].with_name("c2.wav"))]
    shutil.copy(speech_files[2], files[2])
    r = subprocess.run(
        [sys.executable, str(driver), "transcribe", *files, "-o", str(tmp_path / "o"), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [
        f"asrbox: {files[1]}: error: transcription failed: RuntimeError: CUDA out of memory while decoding",
        f"asrbox: 2 transcribed, 1 failed (8.4 s of audio); output in {tmp_path / 'o'}",
    ]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["c.txt", "c2.txt"]
    history = asrbox("history", "list", env=env).stdout
    assert history.count(" failed ") == 1 and history.count(" done ") == 2 and "pending" not in history


# ---------------------------------------------------------------------------- bad input, as a user tries it
def test_damaged_wavs_and_taken_output_name(tmp_path: Path, env: dict[str, str]) -> None:
    """Each problem is one line naming the file; what can be transcribed is; the exit is non-zero."""
    src = eval_clip("en_jfk")[0].read_bytes()
    header, data = src[:44], src[44:]  # a plain 44-byte PCM header: 11.0 s
    d = tmp_path / "in"
    d.mkdir()
    (d / "cut.wav").write_bytes(src[: 44 + len(data) // 2])  # header says 11 s, holds 5.5 s
    less = bytearray(header)
    struct.pack_into("<I", less, 40, len(data) // 2)  # header says 5.5 s, holds 11 s
    (d / "more.wav").write_bytes(bytes(less) + data)
    tag = bytearray(header)
    struct.pack_into("<H", tag, 20, 0x1234)
    (d / "tag.wav").write_bytes(bytes(tag) + data)
    (d / "taken.wav").write_bytes(src)
    out = tmp_path / "out"
    (out / "taken.txt").mkdir(parents=True)
    r = asrbox("transcribe", str(d), "-o", str(out), "--no-progress", env=env)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines == [
        f"asrbox: {d / 'cut.wav'}: warning: read 5.5 s of a header-declared 11.0 s (the file is cut short)",
        f"asrbox: {d / 'more.wav'}: warning: read 5.5 s, as the header declares, but the file holds 11.0 s of audio "
        "data; the rest was not read",
        f"asrbox: {d / 'tag.wav'}: error: unsupported WAV format tag 0x1234 (no decoder for it)",
        f"asrbox: {d / 'taken.wav'}: error: cannot write {out / 'taken.txt'}: a folder has that name",
        f"asrbox: 2 transcribed, 2 failed (11.0 s of audio); 2 only in part (see the warnings); output in {out}",
    ]
    assert error_rate("And so my fellow Americans, ask not what", (out / "cut.txt").read_text(), "en") <= 0.2
    assert (out / "more.txt").read_text().strip() and (out / "taken.txt").is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["cut.txt", "more.txt", "taken.txt"]  # no temp files left


def test_output_folder_under_a_file(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "somefile").write_text("x")
    r = asrbox("transcribe", str(eval_clip("en_jfk")[0]), "-o", str(tmp_path / "somefile" / "out"), env=env)
    assert r.returncode == 73
    assert r.stderr.splitlines() == [
        f"asrbox: cannot create output folder {tmp_path / 'somefile' / 'out'}: Not a directory"
    ]
    r = asrbox("transcribe", str(eval_clip("en_jfk")[0]), "-o", str(tmp_path / "somefile"), env=env)
    assert r.returncode == 73
    assert r.stderr.splitlines() == [
        f"asrbox: cannot use {tmp_path / 'somefile'} as the output folder: a file has that name"
    ]


def test_non_utf8_file_name_json(tmp_path: Path, env: dict[str, str]) -> None:
    """The name's stray byte is \\xe9 in JSON (valid UTF-8), the original byte on the text header and in the
    output file's name; the store records it too."""
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.wav"
    shutil.copy(eval_clip("en_jfk")[0], raw)
    name = os.fsdecode(raw)
    strict = {**env, "PYTHONIOENCODING": "utf-8:strict"}
    r = subprocess.run(
        [sys.executable, "-m", "daemon", "transcribe", raw, "-f", "json", "--no-progress"],
        env=strict,
        capture_output=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.decode("utf-8"))
    assert doc["file"] == str(tmp_path) + "/caf\\xe9.wav" and "Americans" in doc["text"]
    r = asrbox("transcribe", name, "-f", "json", "-o", str(tmp_path / "o"), "--no-progress", env=strict)
    assert r.returncode == 0, r.stderr
    written = tmp_path.joinpath("o", os.fsdecode(b"caf\xe9.json"))
    assert json.loads(written.read_bytes().decode("utf-8"))["file"] == doc["file"]
    assert "caf\\xe9.wav" in asrbox("history", "list", env=env).stdout
