from __future__ import annotations

import csv
import io
import json
import re

from daemon.output.formats import FileTranscript, TimedText, render

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
    rows = list(csv.reader(io.StringIO(render(T, "csv"))))
    assert rows[0] == ["start", "end", "text"] and rows[2][0] == "3661.25" and rows[2][2] == "World\n\nagain"
    data = json.loads(render(T, "json"))
    assert set(data) >= {"file", "duration_s", "language", "text", "segments", "engine", "processing_s"}
    assert data["segments"][1] == {"start": 3661.25, "end": 3723.5, "text": "World\n\nagain"}
    assert render(T, "txt") == "Hello. World\n"
