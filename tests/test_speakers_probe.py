"""The speaker features probed as a hostile or clumsy user would: voice names with slashes, control and bidi
characters or two Unicode spellings, labels with a trailing new line, names that would break an SRT cue, speaker
counts in other scripts or out of range, odd DELETE paths, SQL/FTS-ish searches, a 1 GB voice upload, and the
`asrbox speakers` commands with the same input (bytes that are not UTF-8 too). Each bad request is one line
(4xx JSON or a non-zero exit without a traceback), nothing stored changes, and the daemon stays up (`/health`
after each); HttpDaemon.stop checks its log for tracebacks.

One daemon with the real speaker models (conftest's `speaker_models`) serves the module.
"""

from __future__ import annotations

import unicodedata
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
from conftest import eval_clip
from http_daemon import HttpDaemon, assert_error, raw_http, wait_job

from daemon.audio.decode import SAMPLE_RATE, decode_file

pytestmark = pytest.mark.model

VOICE = "en_hifitts6097_hartmann_12_fawcett_0088"  # 6.2 s of one reader
TIMEOUT = 300


class Box:
    def __init__(self, daemon: HttpDaemon, clip: bytes, record_id: str) -> None:
        self.d = daemon
        self.url = daemon.url
        self.clip = clip  # WAV bytes of one voice
        self.record_id = record_id  # a file record labelled S1

    def healthy(self) -> None:
        assert httpx.get(f"{self.url}/health", timeout=30).status_code == 200

    def enroll(self, name: str, clip: bytes | None = None, file_name: str = "v.wav") -> httpx.Response:
        parts = {"file": (file_name, clip if clip is not None else self.clip, "audio/wav")}
        return httpx.post(f"{self.url}/api/speakers/voices", data={"name": name}, files=parts, timeout=TIMEOUT)

    def voices(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/api/speakers/voices", timeout=30).json()["voices"])

    def stored(self) -> tuple[Any, ...]:
        """What the box keeps: records, jobs, voices, the record's speaker names, the files under uploads/."""
        records = httpx.get(f"{self.url}/api/records?limit=500", timeout=30).json()["items"]
        jobs = httpx.get(f"{self.url}/api/jobs?limit=500", timeout=30).json()["items"]
        names = httpx.get(f"{self.url}/api/records/{self.record_id}/speakers", timeout=30).json()["speakers"]
        uploads = sorted(str(p.relative_to(self.d.store)) for p in (self.d.store / "uploads").rglob("*") if p.is_file())
        return len(records), len(jobs), [v["name"] for v in self.voices()], names, uploads


def _wav(audio: np.ndarray, rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, speaker_models: Path) -> Iterator[Box]:
    d = HttpDaemon(tmp_path_factory.mktemp("speakersprobe"), cache_dir, ASRBOX_SPEAKERS__MODELS_DIR=str(speaker_models))
    try:
        clip = eval_clip(VOICE)[0].read_bytes()
        r = httpx.post(
            f"{d.url}/v1/audio/transcriptions",
            data={"speakers": "auto"},
            files={"file": ("one.wav", clip, "audio/wav")},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
        yield Box(d, clip, r.headers["x-asrbox-record-id"])
    finally:
        d.stop()  # no traceback in its log


# ---------------------------------------------------------------------------- voices
def test_voice_names_refused_or_kept_as_one_clean_line(box: Box) -> None:
    before = box.stored()
    for name, words in (
        ("x" * 10_000, ("name", "at most 100")),
        ("x" * 101, ("name", "at most 100")),
        ("\u202eilL sM", ("name", "control")),  # a bidi override shows another name than the one stored
        ("a\x00b", ("name", "control")),
        ("a\x07b", ("name", "control")),
        ("", ("name", "empty")),
        (" \t\u00a0\u3000", ("name", "empty")),
    ):
        assert_error(box.enroll(name), 400, *words)
        box.healthy()
    assert box.stored() == before
    r = box.enroll("Ann\n\nB")  # white space, new lines too, is one space: a name is one line everywhere
    assert r.status_code == 201 and r.json()["voice"]["name"] == "Ann B", r.text
    for name in ("\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627", "\U0001f469\u200d\U0001f4bb"):  # ZWNJ, ZWJ
        r = box.enroll(name)
        assert r.status_code == 201 and r.json()["voice"]["name"] == name, r.text


def test_voice_name_bytes_that_are_not_utf8_are_refused(box: Box) -> None:
    before = box.stored()
    for raw in (b"\xff\xfe", b"caf\xe9"):  # were stored as U+FFFD
        body = (
            b'--bnd\r\nContent-Disposition: form-data; name="name"\r\n\r\n' + raw + b"\r\n--bnd\r\n"
            b'Content-Disposition: form-data; name="file"; filename="v.wav"\r\n\r\n' + box.clip + b"\r\n--bnd--\r\n"
        )
        headers = {"content-type": "multipart/form-data; boundary=bnd"}
        r = httpx.post(f"{box.url}/api/speakers/voices", content=body, headers=headers, timeout=TIMEOUT)
        assert_error(r, 400, "name", "utf-8")
    assert box.stored() == before


def test_voice_with_a_slash_is_deleted_as_the_console_asks(box: Box) -> None:
    """The console deletes `encodeURIComponent(name)`: 'a/b' arrives as a%2Fb, which the router sees as a/b."""
    for name, path in (("Li/Wu", b"Li%2FWu"), ("..", b"%2E%2E"), ("50%", b"50%25"), ("a%2Fb", b"a%252Fb")):
        assert box.enroll(name).status_code == 201
        status, body = _raw(box, "DELETE", b"/api/speakers/voices/" + path)  # as sent, not normalised
        assert status == 200, (name, body)
        assert name not in [v["name"] for v in box.voices()]
        box.healthy()


def test_a_voice_named_like_another_voices_id_deletes_only_itself(box: Box) -> None:
    first = box.enroll("Owner").json()["voice"]["id"]
    assert box.enroll(first).status_code == 201  # a name that is the other voice's id
    assert httpx.delete(f"{box.url}/api/speakers/voices/{first}", timeout=30).status_code == 200
    assert [v["id"] for v in box.voices() if v["name"] == "Owner"] == [first]
    assert httpx.delete(f"{box.url}/api/speakers/voices/{first}", timeout=30).status_code == 200  # now by id
    assert "Owner" not in [v["name"] for v in box.voices()]


def test_one_name_in_two_unicode_spellings_is_one_voice(box: Box) -> None:
    nfd, nfc = "Jose\u0301", "Jos\u00e9"
    assert box.enroll(nfd).json()["voice"]["name"] == nfc
    r = box.enroll(nfc)
    assert r.status_code == 201 and r.json()["replaced"] is True, r.text
    assert [v["name"] for v in box.voices()].count(nfc) == 1
    # deleted by the name as the user typed it (macOS keyboards give the decomposed spelling), once
    assert httpx.delete(f"{box.url}/api/speakers/voices/{nfd}", timeout=30).status_code == 200
    assert httpx.delete(f"{box.url}/api/speakers/voices/{nfc}", timeout=30).status_code == 404


def test_voice_uploads_that_are_not_a_voice(box: Box) -> None:
    clip = decode_file(eval_clip(VOICE)[0])
    long = np.tile(clip, 12)[: int(60.1 * SAMPLE_RATE)]
    stereo = np.repeat(np.interp(np.arange(clip.size * 3) / 3, np.arange(clip.size), clip), 2)
    before = box.stored()
    for name, data, status, words in (
        ("long.wav", _wav(long), 422, ("long.wav", "longer than 60 s")),
        ("head.wav", box.clip[:44], 422, ("head.wav", "no audio")),
        ("zero.wav", b"", 400, ("zero.wav", "empty")),
        ("noise.wav", _wav(np.random.default_rng(1).uniform(-0.5, 0.5, 10 * SAMPLE_RATE)), 422, ("at least 3 s",)),
        ("page.html", b"<html>" * 500, 422, ("page.html", "not a readable audio")),
    ):
        assert_error(box.enroll("Probe", data, name), status, *words)
        box.healthy()
    assert box.stored() == before
    r = box.enroll("Stereo", _wav(stereo, 48_000, 2))  # 48 kHz stereo is decoded as any other clip
    assert r.status_code == 201 and abs(r.json()["voice"]["seconds"] - clip.size / SAMPLE_RATE) < 0.1, r.text


def test_a_1_gb_voice_upload_is_refused_early(box: Box) -> None:
    boundary = "probe1gb"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nBig\r\n--{boundary}\r\n'
        f'Content-Disposition: form-data; name="file"; filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        chunk = bytes(1 << 20)
        for _ in range(1024):
            yield chunk

    r = httpx.post(
        f"{box.url}/api/speakers/voices",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=TIMEOUT,
    )
    assert_error(r, 413, "big.wav", "100 MB")
    assert "Big" not in [v["name"] for v in box.voices()]
    assert not any((box.d.store / "uploads" / "voices").glob("*"))  # its part is gone
    box.healthy()


def _raw(box: Box, method: str, target: bytes) -> tuple[int, bytes]:
    """One request with a target httpx would re-encode (%ff, %00)."""
    head = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    return raw_http(box.d.port, head)


def test_odd_voice_paths_are_one_line_404s(box: Box) -> None:
    before = box.stored()
    for target in (b"%ff%fe", b"%00", b"%", b"x" * 10_000, b"%2E%2E", b"a/b/c"):
        status, body = _raw(box, "DELETE", b"/api/speakers/voices/" + target)
        assert status == 404, (target[:20], body[:200])
        assert b'"ok":false' in body and len(body) < 400, body[:400]  # the name is cut in the message
        box.healthy()
    assert box.stored() == before


# ---------------------------------------------------------------------------- names of labels
def test_label_names_refused_or_one_clean_line(box: Box) -> None:
    url = f"{box.url}/api/records/{box.record_id}/speakers"
    before = box.stored()
    for label, body, status, words in (
        ("S1%0A", {"name": "x"}, 422, ("not a speaker label",)),  # 'S1\n' passed a ^...$ match
        ("S0", {"name": "x"}, 422, ("not a speaker label",)),
        ("S1000", {"name": "x"}, 422, ("not a speaker label",)),
        ("s1", {"name": "x"}, 422, ("not a speaker label",)),
        ("S1%20", {"name": "x"}, 422, ("not a speaker label",)),
        ("S\u0661", {"name": "x"}, 422, ("not a speaker label",)),
        ("S\uff11", {"name": "x"}, 422, ("not a speaker label",)),
        ("S1", {"name": "a\x00b"}, 422, ("name", "control")),
        ("S1", {"name": "\u202eabc"}, 422, ("name", "control")),
        ("S1", {"name": "x" * 10_000}, 422, ("name", "100")),
        ("S1", {"name": {"a": [1]}}, 422, ("name",)),
        ("S1", {"name": "x", "extra": 1}, 422, ("extra",)),
    ):
        assert_error(httpx.put(f"{url}/{label}", json=body, timeout=30), status, *words)
        box.healthy()
    deep = '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = httpx.put(f"{url}/S1", content=deep, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code in (400, 422) and r.json()["ok"] is False, r.text[:300]
    for rid in ("nope", "r" * 10_000):
        r = httpx.put(f"{box.url}/api/records/{rid}/speakers/S1", json={"name": "x"}, timeout=30)
        assert len(assert_error(r, 404, "no record")["message"]) < 120  # the id is cut in the message
        r = httpx.put(f"{box.url}/api/sessions/{rid}/speakers/S1", json={"name": "x"}, timeout=30)
        assert_error(r, 404, "no session")
    assert box.stored() == before


def _peak_mb(pid: int) -> int:
    return (
        int(next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM")).split()[1])
        // 1024
    )


def test_a_1_gb_json_body_is_refused_before_it_is_held(box: Box) -> None:
    """FastAPI reads a JSON body whole: a 1 GB name made the daemon hold about 3.7 GB before a 422."""

    def body(mb: int) -> Iterator[bytes]:
        yield b'{"name": "x", "pad": "'
        chunk = b"y" * (1 << 20)
        for _ in range(mb):
            yield chunk
        yield b'"}'

    url = f"{box.url}/api/records/{box.record_id}/speakers/S1"
    Path(f"/proc/{box.d.proc.pid}/clear_refs").write_text("5")  # the peak counts from here
    before, names = _peak_mb(box.d.proc.pid), box.stored()[3]
    json_type = {"content-type": "application/json"}
    assert_error(httpx.put(url, content=body(1024), headers=json_type, timeout=TIMEOUT), 413, "16 MB")  # chunked
    assert_error(httpx.put(url, content=b"".join(body(20)), headers=json_type, timeout=TIMEOUT), 413, "16 MB")
    # labelled multipart, to a JSON route or the open login: the cap holds (only upload routes lift it)
    multipart = {"content-type": "multipart/form-data; boundary=x"}
    for method, target in (("PUT", url), ("POST", f"{box.url}/api/login")):
        r = httpx.request(method, target, content=body(1024), headers=multipart, timeout=TIMEOUT)
        assert_error(r, 413, "16 MB")
    assert _peak_mb(box.d.proc.pid) - before < 200
    assert box.stored()[3] == names
    box.healthy()


def test_a_name_cannot_break_the_srt_cues(box: Box) -> None:
    """A new line in a name (SRT cues are separated by a blank line) is one space: the cue stays one cue."""
    job = httpx.post(
        f"{box.url}/api/jobs", data={"speakers": "1"}, files={"file": ("j.wav", box.clip)}, timeout=TIMEOUT
    ).json()["job"]
    assert wait_job(box.url, job["id"], TIMEOUT)["status"] == "done"
    rid = httpx.get(f"{box.url}/api/jobs/{job['id']}", timeout=30).json()["files"][0]["record_id"]
    forged = "Eve\n\n99\n00:00:00,000 --> 00:00:09,000\nFAKE"
    r = httpx.put(f"{box.url}/api/records/{rid}/speakers/S1", json={"name": forged}, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == " ".join(forged.split()), r.text
    srt = httpx.get(f"{box.url}/api/jobs/{job['id']}/files/0/result?format=srt", timeout=30).text
    cues = srt.strip().split("\n\n")
    assert len(cues) == 1 and len(cues[0].splitlines()) == 3, srt  # index, times, one line of text
    assert cues[0].splitlines()[2].startswith("Eve 99 00:00:00,000 --> 00:00:09,000 FAKE: "), srt
    assert httpx.delete(f"{box.url}/api/records/{rid}", timeout=30).status_code == 200  # deleted meanwhile
    r = httpx.put(f"{box.url}/api/records/{rid}/speakers/S1", json={"name": "Eve"}, timeout=30)
    assert_error(r, 404, "no record")
    r = httpx.get(f"{box.url}/api/jobs/{job['id']}/files/0/result?format=srt", timeout=30)
    assert_error(r, 410, "record was deleted")  # was a 409 'it is done'


# ---------------------------------------------------------------------------- speaker counts
BAD_COUNTS: list[tuple[dict[str, str], tuple[str, ...]]] = [
    ({"speakers": "0"}, ("speakers", "between 1 and 50")),
    ({"speakers": "-1"}, ("speakers",)),
    ({"speakers": "1e3"}, ("speakers", "'1e3'")),
    ({"speakers": "NaN"}, ("speakers", "'NaN'")),
    ({"speakers": "\uff12"}, ("speakers", "'\uff12'")),  # full-width 2: int() takes it, the API does not
    ({"speakers": "\u0662"}, ("speakers",)),
    ({"speakers": "1_0"}, ("speakers", "'1_0'")),
    ({"speakers": "2", "min_speakers": "3"}, ("speakers", "outside")),
    ({"speakers": "5", "max_speakers": "4"}, ("speakers", "outside")),
    ({"min_speakers": "5", "max_speakers": "2"}, ("min-speakers",)),
    ({"max_speakers": "0"}, ("max_speakers", "1 to 50")),
    ({"min_speakers": "0"}, ("min_speakers", "1 to 50")),  # was read as 'not given'
    ({"min_speakers": "1000000000000"}, ("min_speakers", "1 to 50")),
    ({"max_speakers": "9" * 5000}, ("max_speakers",)),
    ({"min_speakers": "\uff13"}, ("min_speakers",)),
]


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/api/jobs"])
def test_bad_speaker_counts_are_one_line_and_store_nothing(box: Box, path: str) -> None:
    before = box.stored()
    for fields, words in BAD_COUNTS:
        r = httpx.post(f"{box.url}{path}", data=fields, files={"file": ("c.wav", box.clip)}, timeout=TIMEOUT)
        assert_error(r, 400, *words)
        box.healthy()
    assert box.stored() == before


def test_short_or_silent_files_with_speakers_give_no_labels(box: Box) -> None:
    for name, audio in (("tenth.wav", np.zeros(SAMPLE_RATE // 10)), ("silence.wav", np.zeros(10 * SAMPLE_RATE))):
        r = httpx.post(
            f"{box.url}/v1/audio/transcriptions",
            data={"speakers": "auto ", "response_format": "verbose_json"},
            files={"file": (name, _wav(audio))},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text  # labels asked for, nobody heard: the shape stays, empty
        assert r.json()["segments"] == [] and r.json()["speakers"] == [], r.text


# ---------------------------------------------------------------------------- search
@pytest.mark.parametrize(
    "speaker",
    ["%", "_", "S%", "'", '"', "' OR 1=1 --", '" OR ""="', "S1' UNION SELECT id FROM voices --", "*", "NEAR(a b)",
     "a OR", '"open', "\\", "\x00", "a\x00b", "NULL"],
)  # fmt: skip
def test_sql_and_fts_ish_speakers_match_nothing(box: Box, speaker: str) -> None:
    for path, key in (("/api/records", "items"), ("/api/speakers/utterances", "record_ids")):
        r = httpx.get(f"{box.url}{path}", params={"speaker": speaker}, timeout=30)
        assert r.status_code == 200 and r.json()[key] == [], (path, r.text[:300])
    r = httpx.get(f"{box.url}/api/records", params={"speaker": speaker, "q": speaker}, timeout=30)
    assert r.status_code == 200, r.text[:300]


def test_overlong_speaker_searches_are_422(box: Box) -> None:
    for path in ("/api/records", "/api/speakers/utterances"):
        assert_error(httpx.get(f"{box.url}{path}", params={"speaker": "x" * 10_000}, timeout=30), 422, "speaker")
    assert_error(httpx.get(f"{box.url}/api/speakers/utterances", params={"speaker": ""}, timeout=30), 422, "speaker")
    box.healthy()


# ---------------------------------------------------------------------------- the CLI
def test_cli_speakers_bad_input_is_one_line(box: Box) -> None:
    rid = box.record_id
    not_utf8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes
    before = box.stored()
    for args, words in (
        (("rename", "--record", rid, "S0", "x"), ("not a speaker label",)),
        (("rename", "--record", rid, "s1", "x"), ("not a speaker label",)),
        (("rename", "--record", rid, "", "x"), ("not a speaker label",)),
        (("rename", "--record", rid, "'; DROP TABLE voices;--", "x"), ("not a speaker label",)),
        (("rename", "--record", rid, "S\u0661", "x"), ("not a speaker label",)),
        (("rename", "--record", rid, "S1", "x" * 10_000), ("at most 100",)),
        (("rename", "--record", rid, "S1", "\u202eabc"), ("control",)),
        (("rename", "--record", rid, "S1", not_utf8), ("name", "utf-8")),
        (("rename", "--record", not_utf8, "S1", "x"), ("record", "utf-8")),
        (("rename", "--record", "r" * 10_000, "S1", "x"), ("no record",)),
        (("list", "--record", "nope"), ("no record 'nope'",)),
        (("list", "--session", "nope"), ("no session 'nope'",)),
        (("enroll", "x" * 10_000, str(eval_clip(VOICE)[0])), ("at most 100",)),
        (("enroll", "a\x01b", str(eval_clip(VOICE)[0])), ("control",)),
        (("enroll", not_utf8, str(eval_clip(VOICE)[0])), ("name", "utf-8")),
        (("delete", not_utf8), ("name", "utf-8")),
        (("delete", "x" * 10_000), ("no enrolled voice",)),
    ):
        p = box.d.asrbox("speakers", *args)
        err = p.stderr.strip()
        assert p.returncode != 0 and "Traceback" not in err and "\n" not in err and len(err) < 300, (args[:3], err)
        assert all(w.lower() in err.lower() for w in words), (args[:3], err)
    for args, words in (
        (("search", "x", "--speaker", not_utf8), ("speaker", "utf-8")),
        (("list", "--speaker", not_utf8), ("speaker", "utf-8")),
        (("search", not_utf8, "--speaker", "S1"), ("query", "utf-8")),
        (("list", "--speaker", " "), ("--speaker", "empty")),
    ):
        p = box.d.asrbox("history", *args)
        err = p.stderr.strip()
        assert p.returncode == 64 and "Traceback" not in err and "\n" not in err, (args, err)
        assert all(w.lower() in err.lower() for w in words), (args, err)
    for speaker in ("%", "' OR 1=1 --", '"open NEAR(', "x" * 10_000):
        p = box.d.asrbox("history", "search", "x", "--speaker", speaker)
        assert p.returncode == 0 and "no matching records" in p.stderr, (speaker[:20], p.stderr[-500:])
    assert box.stored() == before
    p = box.d.asrbox("speakers", "rename", "--record", rid, " S1 ", "Ann\nLee")
    assert p.returncode == 0, p.stderr
    names = httpx.get(f"{box.url}/api/records/{rid}/speakers", timeout=30).json()["speakers"]
    assert names == [{"label": "S1", "name": "Ann Lee"}]
    assert unicodedata.is_normalized("NFC", names[0]["name"])


# ---------------------------------------------------------------------------- damaged models
def test_damaged_models_are_one_line(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, speaker_models: Path
) -> None:
    """A models folder whose CAM++ is cut short (a partial copy): the daemon starts without live labels ([speakers]
    live = auto; it exited with onnxruntime's traceback), or refuses in one line with live = on; enrolling is a 409
    naming `asrbox models verify` over HTTP and on the CLI (was a 500 and a traceback); a transcription still
    gives its text."""
    damaged = tmp_path_factory.mktemp("damaged") / "speakers"
    damaged.mkdir()
    for f in speaker_models.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes()[:5000] if f.name == "campplus.onnx" else f.read_bytes())
    d = HttpDaemon(
        tmp_path_factory.mktemp("damagedbox"),
        cache_dir,
        ASRBOX_SPEAKERS__MODELS_DIR=str(damaged),
    )
    try:
        assert "live speaker labels off" in d.log.read_text()
        p = d.asrbox(
            "run", "--source", str(d.workdir / "noise.wav"), ASRBOX_SPEAKERS__LIVE="on", ASRBOX_HTTP__ENABLED="false"
        )
        assert p.returncode == 69 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert "campplus.onnx cannot be loaded" in p.stderr.strip().splitlines()[-1], p.stderr[-2000:]
        clip = eval_clip(VOICE)[0]
        parts = {"file": ("v.wav", clip.read_bytes())}
        r = httpx.post(f"{d.url}/api/speakers/voices", data={"name": "X"}, files=parts, timeout=TIMEOUT)
        message = assert_error(r, 409, "cannot be loaded", "asrbox models verify")["message"]
        assert str(damaged) not in message  # the box's paths are not shown
        p = d.asrbox("speakers", "enroll", "X", str(clip))
        err = p.stderr.strip()
        assert p.returncode != 0 and "\n" not in err and "asrbox models verify" in err, err
        r = httpx.post(f"{d.url}/v1/audio/transcriptions", data={"speakers": "auto"}, files=parts, timeout=TIMEOUT)
        assert r.status_code == 200 and r.json()["text"], r.text
        assert httpx.get(f"{d.url}/api/speakers/voices", timeout=30).json()["voices"] == []
    finally:
        d.stop()  # no traceback in its log


def test_two_hours_the_vad_found_silent_cost_no_segmentation(speaker_models: Path) -> None:
    """A 2 h file with no speech (the transcriber's VAD found none): the windows nobody speaks in are not run
    through segmentation-3.0 (it took 61 s of CPU for nothing); a window with speech still is."""
    import time

    from daemon.speakers.cluster import Bounds
    from daemon.speakers.diarize import Diarizer
    from daemon.speakers.models import load

    diarizer = Diarizer(load(speaker_models), threads=1)
    t0 = time.process_time()
    blocks = (np.zeros(60 * SAMPLE_RATE, np.float32) for _ in range(120))  # streamed, as a file is decoded
    result = diarizer.run(blocks, Bounds(), 10.0, [])
    assert result.speakers == 0 and result.turns == ()
    assert time.process_time() - t0 < 10
    clip = decode_file(eval_clip(VOICE)[0])
    audio = np.concatenate([np.zeros(30 * SAMPLE_RATE, np.float32), clip, np.zeros(30 * SAMPLE_RATE, np.float32)])
    heard = diarizer.run([audio], Bounds(), 10.0, [(30.0, 30.0 + clip.size / SAMPLE_RATE)])
    assert heard.speakers == 1 and all(t.start > 29.5 and t.end < 31 + clip.size / SAMPLE_RATE for t in heard.turns)
