from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.output.formats import (
    FileTranscript,
    OutputError,
    TimedText,
    output_folder,
    printable,
    render,
    write_output,
)

T = FileTranscript(
    file="/x/a.wav",
    duration_s=3723.5,
    language="en",
    text="Hello. World",
    raw_text="hello world",
    segments=(TimedText(0.0, 1.5, "Hello."), TimedText(3661.25, 3723.5, "World\n\nagain")),
    engine={"name": "whisper"},
    processing_s=1.0,
    record_id="r1",
)


def test_srt_parses_back() -> None:
    doc = render(T, "srt")
    blocks = [b for b in doc.strip().split("\n\n")]
    assert len(blocks) == 2
    idx, times, *text = blocks[1].splitlines()
    assert idx == "2" and times == "01:01:01,250 --> 01:02:03,500" and text == ["World", "again"]


def test_vtt_parses_back() -> None:
    doc = render(T, "vtt")
    assert doc.startswith("WEBVTT\n\n")
    cues = re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n", doc)
    assert cues == [("00:00:00.000", "00:00:01.500"), ("01:01:01.250", "01:02:03.500")]


def test_csv_and_json_parse_back() -> None:
    doc = render(T, "csv")
    assert doc.startswith("\ufeff")  # UTF-8 with a BOM: Excel shows Chinese right only then
    rows = list(csv.reader(io.StringIO(doc.removeprefix("\ufeff"))))
    assert rows[0] == ["start", "end", "text"] and rows[2][0] == "3661.25" and rows[2][2] == "World\n\nagain"
    data = json.loads(render(T, "json"))
    assert set(data) >= {"file", "duration_s", "language", "text", "segments", "engine", "processing_s"}
    assert data["segments"][1] == {"start": 3661.25, "end": 3723.5, "text": "World\n\nagain"}
    assert render(T, "txt") == "Hello. World\n"


def test_json_file_name_not_utf8_is_escaped() -> None:
    name = os.fsdecode(b"/x/caf\xe9.wav")  # as Python hands us an undecodable file name
    doc = render(replace(T, file=name), "json")
    doc.encode("utf-8")  # valid UTF-8, no lone surrogate
    assert json.loads(doc)["file"] == "/x/caf\\xe9.wav"
    assert printable("/x/café.wav") == "/x/café.wav"


def test_write_output_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    write_output(target, "first\n")
    write_output(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]  # no temp file left
    linked = tmp_path / "link.txt"
    linked.symlink_to(target)
    write_output(linked, "via link\n")
    assert linked.is_symlink() and target.read_text() == "via link\n"


def test_write_output_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken.txt").mkdir()
    with pytest.raises(OutputError) as exc:
        write_output(tmp_path / "taken.txt", "x")
    assert str(exc.value) == f"cannot write {tmp_path / 'taken.txt'}: a folder has that name"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as exc:
        write_output(tmp_path / "file" / "a.txt", "x")
    assert str(exc.value) == f"cannot write {tmp_path / 'file' / 'a.txt'}: Not a directory"
    assert exc.value.exit_code == 73 and sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken.txt"]


def test_output_folder_checks(tmp_path: Path) -> None:
    assert output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="a file has that name"):
        output_folder(tmp_path / "f")
    with pytest.raises(OutputError, match=r"cannot create output folder .*: Not a directory"):
        output_folder(tmp_path / "f" / "out")


def test_csv_cells_that_would_start_a_formula_are_shown_as_text() -> None:
    """A name, file name or line starting with = + - @ (or a tab/CR) would run as a spreadsheet formula."""
    import csv
    import io

    from daemon.output.formats import FileTranscript, TimedText, render

    segs = (
        TimedText(0.0, 1.0, '=HYPERLINK("http://x")', "S1"),
        TimedText(1.0, 2.0, "-5 degrees", "S2"),
        TimedText(2.0, 3.0, "plain = fine", "S1"),
    )
    t = FileTranscript("m.wav", 3.0, "en", "", "", segs, {}, 0.0, speaker_names={"S2": "@boss"})
    rows = list(csv.reader(io.StringIO(render(t, "csv").removeprefix("\ufeff"))))
    assert [r[-1] for r in rows[1:]] == ['\'=HYPERLINK("http://x")', "'-5 degrees", "plain = fine"]
    assert rows[2][2] == "'@boss" and rows[1][0] == "0.00"
