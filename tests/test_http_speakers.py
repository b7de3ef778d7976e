"""Speakers over HTTP against the daemon as a subprocess, with the real speaker models (conftest's
`speaker_models`): /v1 with the official `openai` client (verbose_json carries `speaker`), srt/vtt cues
`S1: ...`, json and text unchanged; a two-file job whose results carry the labels; a voice enrolled over HTTP
named in a later transcription; bad requests that are one line each and store nothing; no models: one 409.

One daemon serves the module. Its speaker models folder is a folder of links to the shared models, so one test
can move it away (the box without models) and put it back.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
from conftest import eval_clip, join_clips, write_wav
from http_daemon import HttpDaemon, assert_error, wait_job

from daemon.audio.decode import SAMPLE_RATE, decode_file

pytestmark = pytest.mark.model

A1, A2 = "en_librispeech_1272-128104-0001", "en_librispeech_1272-128104-0003"  # one reader (A)
B1, B2, B3 = (  # another (B): Hi-Fi TTS 6097
    "en_hifitts6097_astralplane_04_leadbeater_0040",
    "en_hifitts6097_nada_lily_12_haggard_0523",
    "en_hifitts6097_swag_05_tompkins_0390",
)
B_ENROLL = "en_hifitts6097_hartmann_12_fawcett_0088"  # B again, a clip in no test meeting
PAUSE_S = 1.2
TIMEOUT = 300


Spans = list[tuple[float, float, str]]
SPANS: dict[str, Spans] = {}  # file name -> where each reader reads (start, end, "A" or "B")


def meeting(path: Path, clips: tuple[str, ...]) -> Path:
    """The clips one after another, 1.2 s of faint noise between them (conftest's join_clips)."""
    audio, spans = join_clips(clips, (PAUSE_S,) * len(clips))
    SPANS[path.name] = [(start, end, "A" if "librispeech" in clip else "B") for start, end, clip in spans]
    return write_wav(path, audio)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("speakers-audio")
    clip = decode_file(eval_clip(B_ENROLL)[0])
    return {
        "abab": meeting(d / "abab.wav", (A1, B1, A2, B2)),  # A first: S1 is A
        "ba": meeting(d / "ba.wav", (B3, A1)),  # B first: S1 is B
        "silence": write_wav(d / "silence.wav", np.zeros(5 * SAMPLE_RATE, np.float32)),
        "short": write_wav(d / "short.wav", clip[: SAMPLE_RATE // 2]),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, speaker_models: Path) -> Path:
    """The daemon's models folder: links to the shared models (moving it away leaves them alone)."""
    folder = tmp_path_factory.mktemp("speaker-links") / "speakers"
    folder.mkdir()
    for f in speaker_models.iterdir():
        (folder / f.name).symlink_to(f)
    return folder


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, models: Path) -> Iterator[HttpDaemon]:
    d = HttpDaemon(tmp_path_factory.mktemp("httpspeakers"), cache_dir, ASRBOX_SPEAKERS__MODELS_DIR=str(models))
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon: HttpDaemon) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{daemon.url}/v1", api_key="not-needed-on-loopback", max_retries=0, timeout=TIMEOUT)


def v1(daemon: HttpDaemon, path: Path | None, **fields: str) -> httpx.Response:
    parts = {"file": (path.name, path.read_bytes(), "audio/wav")} if path is not None else None
    return httpx.post(f"{daemon.url}/v1/audio/transcriptions", data=fields, files=parts, timeout=TIMEOUT)


def labels_of(segments: list[Any]) -> list[str | None]:
    return [getattr(s, "speaker", None) if not isinstance(s, dict) else s.get("speaker") for s in segments]


def assert_two_speakers(segments: list[dict[str, Any]], name: str) -> None:
    """Each segment of the meeting `name` labelled by who reads there: the first reader S1, the other S2."""
    spans = SPANS[name]
    order = {spans[0][2]: "S1", "B" if spans[0][2] == "A" else "A": "S2"}
    for s in segments:
        who = max(spans, key=lambda x: min(s["end"], x[1]) - max(s["start"], x[0]))[2]
        assert s["speaker"] == order[who], (s, spans)
    assert {s["speaker"] for s in segments} == {"S1", "S2"}, segments


def stored(daemon: HttpDaemon) -> tuple[int, int, int, list[str]]:
    """What the box keeps: records, jobs, voices, and the files under uploads/ (no temporary part left)."""
    records = httpx.get(f"{daemon.url}/api/records?limit=500", timeout=30).json()["items"]
    jobs = httpx.get(f"{daemon.url}/api/jobs?limit=500", timeout=30).json()["items"]
    voices = httpx.get(f"{daemon.url}/api/speakers/voices", timeout=30).json()["voices"]
    uploads = sorted(str(p.relative_to(daemon.store)) for p in (daemon.store / "uploads").rglob("*") if p.is_file())
    return len(records), len(jobs), len(voices), uploads


# ---------------------------------------------------------------------------- /v1
def test_v1_verbose_json_srt_carry_speakers_json_text_unchanged(
    client: Any, daemon: HttpDaemon, files: dict[str, Path]
) -> None:
    with files["abab"].open("rb") as fh:
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=fh,
            response_format="verbose_json",
            language="en",
            extra_body={"speakers": "auto"},
        )
    segments = [s.model_dump() for s in verbose.segments]
    assert_two_speakers(segments, "abab.wav")
    assert all(s["speaker_name"] is None for s in segments)  # nobody is named or enrolled yet
    assert verbose.model_extra["speakers"] == [{"label": "S1", "name": None}, {"label": "S2", "name": None}]

    srt = v1(daemon, files["ba"], response_format="srt", language="en", speakers="2")
    assert srt.status_code == 200, srt.text
    cues = [block.split("\n", 2)[2] for block in srt.text.strip().split("\n\n")]
    assert cues[0].startswith("S1: ") and cues[-1].startswith("S2: ") and "quilter" in cues[-1].lower(), cues
    rid = srt.headers["x-asrbox-record-id"]
    record = httpx.get(f"{daemon.url}/api/records/{rid}", timeout=30).json()["record"]
    assert {s["speaker"] for s in record["segments"]} == {"S1", "S2"}  # the record keeps the labels

    vtt = v1(daemon, files["ba"], response_format="vtt", language="en", speakers="2")
    assert vtt.status_code == 200 and "\nS1: " in vtt.text and "\nS2: " in vtt.text, vtt.text
    plain = v1(daemon, files["ba"], response_format="json", language="en", speakers="auto")
    assert plain.status_code == 200 and set(plain.json()) == {"text", "usage"}
    text = v1(daemon, files["ba"], response_format="text", language="en", speakers="auto")
    assert text.status_code == 200 and "S1" not in text.text and text.text.strip() == plain.json()["text"]
    with files["ba"].open("rb") as fh:
        without = client.audio.transcriptions.create(
            model="whisper-1", file=fh, response_format="verbose_json", language="en"
        )
    assert labels_of(without.segments) == [None] * len(without.segments)  # not asked: no labels


# ---------------------------------------------------------------------------- jobs
def test_job_with_speakers_labels_every_file_and_its_results(daemon: HttpDaemon, files: dict[str, Path]) -> None:
    parts = [("file", (p.name, p.read_bytes(), "audio/wav")) for p in (files["abab"], files["ba"])]
    r = httpx.post(f"{daemon.url}/api/jobs", data={"language": "en", "speakers": "2"}, files=parts, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    job = r.json()["job"]
    assert job["options"]["speakers"] == 2 and job["options"]["min_speakers"] == 1
    job = wait_job(daemon.url, job["id"], TIMEOUT)
    assert job["status"] == "done" and job["files_done"] == 2, job
    base = f"{daemon.url}/api/jobs/{job['id']}"
    for idx, name in ((0, "abab.wav"), (1, "ba.wav")):
        doc = httpx.get(f"{base}/files/{idx}/result?format=json", timeout=30).json()
        assert_two_speakers(doc["segments"], name)
        srt = httpx.get(f"{base}/files/{idx}/result?format=srt", timeout=30).text
        assert "\nS1: " in srt and "\nS2: " in srt, srt
        one = list(csv.reader(io.StringIO(httpx.get(f"{base}/files/{idx}/result?format=csv", timeout=30).text)))
        assert one[0] == ["\ufeffstart", "end", "speaker", "text"] and {row[2] for row in one[1:]} == {"S1", "S2"}
    batch = list(csv.reader(io.StringIO(httpx.get(f"{base}/results.csv", timeout=30).text)))
    assert batch[0] == ["\ufefffile", "start", "end", "speaker", "text"]
    assert {(row[0], row[3]) for row in batch[1:]} == {(n, s) for n in ("abab.wav", "ba.wav") for s in ("S1", "S2")}
    with zipfile.ZipFile(io.BytesIO(httpx.get(f"{base}/results.zip?format=vtt", timeout=30).content)) as zf:
        vtts = [zf.read(n).decode() for n in sorted(zf.namelist())]
    assert len(vtts) == 2 and all("\nS1: " in v and "\nS2: " in v for v in vtts)


# ---------------------------------------------------------------------------- enrolled voices
def test_voice_enrolled_over_http_names_its_speaker(client: Any, daemon: HttpDaemon, files: dict[str, Path]) -> None:
    clip = eval_clip(B_ENROLL)[0]
    url = f"{daemon.url}/api/speakers/voices"
    r = httpx.post(url, data={"name": "Ms B"}, files={"file": ("b.wav", clip.read_bytes())}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    assert r.json()["voice"]["name"] == "Ms B" and r.json()["replaced"] is False
    assert 6.0 < r.json()["voice"]["seconds"] < 6.5
    again = httpx.post(url, data={"name": "Ms B"}, files={"file": ("b.wav", clip.read_bytes())}, timeout=TIMEOUT)
    assert again.status_code == 201 and again.json()["replaced"] is True  # the same name: replaced, not doubled
    assert [v["name"] for v in httpx.get(url, timeout=30).json()["voices"]] == ["Ms B"]
    assert not list((daemon.store / "uploads" / "voices").iterdir())  # the audio is not kept

    with files["abab"].open("rb") as fh:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=fh, response_format="verbose_json", language="en", extra_body={"speakers": "auto"}
        )
    segments = [s.model_dump() for s in verbose.segments]
    assert_two_speakers(segments, "abab.wav")
    assert {(s["speaker"], s["speaker_name"]) for s in segments} == {("S1", None), ("S2", "Ms B")}
    srt = v1(daemon, files["ba"], response_format="srt", language="en", speakers="auto")
    assert srt.status_code == 200 and "\nMs B: " in srt.text and "\nS2: " in srt.text, srt.text
    rid = srt.headers["x-asrbox-record-id"]
    named = httpx.get(f"{daemon.url}/api/records/{rid}/speakers", timeout=30).json()["speakers"]
    assert {"label": "S1", "name": "Ms B"} in named  # kept with the record: its exports name her too
    assert httpx.delete(f"{url}/Ms B", timeout=30).status_code == 200
    assert httpx.get(url, timeout=30).json()["voices"] == []


# ---------------------------------------------------------------------------- refusals
def test_bad_requests_are_one_line_and_store_nothing(daemon: HttpDaemon, files: dict[str, Path]) -> None:
    before = stored(daemon)
    wav = files["ba"]
    for fields, words in (
        ({"speakers": "0"}, ("speakers", "between 1 and 50")),
        ({"speakers": "abc"}, ("speakers", "'abc'")),
        ({"speakers": "auto", "min_speakers": "3", "max_speakers": "2"}, ("min-speakers",)),
        ({"min_speakers": "two"}, ("min_speakers", "whole number")),
    ):
        assert_error(v1(daemon, wav, **fields), 400, *words)
        parts = [("file", (wav.name, wav.read_bytes(), "audio/wav"))] * 2
        job = httpx.post(f"{daemon.url}/api/jobs", data=fields, files=parts, timeout=TIMEOUT)
        assert_error(job, 400, *words)
    url = f"{daemon.url}/api/speakers/voices"
    clip = eval_clip(B_ENROLL)[0].read_bytes()
    for data, upload, status, words in (
        ({"name": "X"}, None, 400, ("file", "missing")),
        ({}, ("b.wav", clip), 400, ("name",)),
        ({"name": "  "}, ("b.wav", clip), 400, ("name",)),
        ({"name": "X"}, ("silence.wav", files["silence"].read_bytes()), 422, ("silence.wav", "at least 3 s")),
        ({"name": "X"}, ("short.wav", files["short"].read_bytes()), 422, ("short.wav", "at least 3 s")),
        ({"name": "X"}, ("notes.txt", b"not audio at all"), 422, ("notes.txt",)),
    ):
        r = httpx.post(url, data=data, files={"file": upload} if upload else {"other": "x"}, timeout=TIMEOUT)
        error = assert_error(r, status, *words)
        assert ".part-" not in error["message"]  # the box's own paths never show
    assert stored(daemon) == before


def test_missing_models_one_clear_error(daemon: HttpDaemon, files: dict[str, Path], models: Path) -> None:
    before = stored(daemon)
    away = models.with_name("moved")
    models.rename(away)
    try:
        wav = files["ba"]
        for r in (
            v1(daemon, wav, speakers="auto"),
            httpx.post(
                f"{daemon.url}/api/jobs",
                data={"speakers": "2"},
                files={"file": (wav.name, wav.read_bytes())},
                timeout=TIMEOUT,
            ),
            httpx.post(
                f"{daemon.url}/api/speakers/voices",
                data={"name": "X"},
                files={"file": ("b.wav", eval_clip(B_ENROLL)[0].read_bytes())},
                timeout=TIMEOUT,
            ),
        ):
            assert_error(r, 409, "speaker models are not installed: asrbox models prepare-speakers")
    finally:
        away.rename(models)
    assert stored(daemon) == before


def test_speakers_by_default_without_models_transcribe_unlabelled() -> None:
    """`[speakers] files = true` on a box without the models: a request that asked for nothing gets its text
    (no labels); one that asked for speakers gets the 409."""
    from fastapi import HTTPException

    from daemon.http.uploads import Upload

    def gone() -> str:
        return "speaker models are not installed: asrbox models prepare-speakers"

    assert Upload().speakers_checked(True, gone) is None
    assert Upload().speakers_checked(True, lambda: None) is not None
    assert Upload({"language": ["en"]}).speakers_checked(False, gone) is None
    for asked in ({"speakers": ["auto"]}, {"max_speakers": ["3"]}):
        with pytest.raises(HTTPException) as err:
            Upload(asked).speakers_checked(True, gone)
        assert err.value.status_code == 409


def test_verbose_json_keeps_its_shape_when_nobody_is_labelled(daemon: HttpDaemon, files: dict[str, Path]) -> None:
    r = v1(daemon, files["silence"], speakers="auto", response_format="verbose_json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["speakers"] == [] and all(s["speaker"] is None for s in body["segments"])
