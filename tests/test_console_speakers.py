"""Speakers in the web console (docs/console.md, docs/speakers.md), end to end: headless Chromium against one real
daemon for the module, with the real speaker models (conftest's `speaker_models`).

A two-speaker meeting (A, B, A from the eval clips) is uploaded through the Transcribe page with "Speakers:
exactly 2"; its file shows two labels; the record in History colours S1 and S2 differently; renaming S1 to
"Ms Li" on the page shows at once in the lines and in the record's SRT export. A voice enrolled on the Voices
page is listed, and delete (after the confirmation) removes it. On Live, a final of the current session is
coloured by its label and renaming the label in the session shows in the captions at once. A box without the
speaker models says so on the Voices page (enrolling turned off) and on Transcribe, and stores nothing."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_console
from conftest import Broker, eval_clip, free_port, join_clips, write_wav
from headless import start_chrome
from test_captions import wait
from test_console import _status, click, fetch, js, ready
from test_daemon import daemon_env, start_daemon

pytestmark = test_console.pytestmark  # the real model, a broker, a browser (skipped without chromium)
# A, B, A: LibriSpeech 1272 twice around Hi-Fi TTS 6097, 1.2 s of faint noise between them (tests/test_speakers.py)
PARTS = (
    "en_librispeech_1272-128104-0001",
    "en_hifitts6097_astralplane_04_leadbeater_0040",
    "en_librispeech_1272-128104-0003",
)
VOICE_CLIP = "en_librispeech_1272-128104-0003"  # 9.9 s of one voice
PAUSE_S = 1.2


@dataclass
class Box:
    base: str
    tmp: Path
    files: dict[str, Path] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)  # the meeting's, once transcribed
    job: str = ""  # and its job


def _audio(tmp: Path) -> dict[str, Path]:
    from daemon.audio.decode import SAMPLE_RATE

    audio, spans = join_clips(PARTS, (PAUSE_S,) * len(PARTS))
    meeting = write_wav(tmp / "meeting.wav", audio)
    # the microphone: the first two parts (two voices), then quiet, over and over
    two = audio[: round(spans[1][1] * SAMPLE_RATE)]
    mic = write_wav(tmp / "mic.wav", np.concatenate([two, np.zeros(12 * SAMPLE_RATE, np.float32)]))
    return {"meeting": meeting, "mic": mic, "voice": eval_clip(VOICE_CLIP)[0]}


def _post(url: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, speaker_models: Path) -> Iterator[Box]:
    tmp = tmp_path_factory.mktemp("console-speakers")
    files = _audio(tmp)
    extra = {"ASRBOX_SPEAKERS__MODELS_DIR": str(speaker_models), "ASRBOX_SPEAKERS__LIVE": "on"}
    proc, broker, base = _start(tmp, cache_dir, **extra)
    try:
        yield Box(base, tmp, files)
    finally:
        _stop(proc, broker)


def _start(tmp: Path, cache_dir: Path, **extra: str) -> tuple[Any, Broker, str]:
    """A daemon with its HTTP face on loopback (open), its microphone playing the mic clip."""
    broker = Broker(tmp)
    broker.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    env.update(ASRBOX_STORE__PATH=str(tmp / "store"), ASRBOX_ASR__CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    extra = {"ASRBOX_HTTP__ENABLED": "true", "ASRBOX_HTTP__PORT": str(port), **extra}
    args = ("--source", str(tmp / "mic.wav"), "--loops", "100000")
    proc = start_daemon(daemon_env(env, broker, **extra), *args, log=tmp / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: _status(base + "/health") == 200 or proc.poll() is not None, 120, "the daemon's HTTP face")
        assert proc.poll() is None, (tmp / "daemon.log").read_text()[-3000:]
        assert _post(base + "/api/listening", {"on": False}) == 200  # the engine for the files until Live's test
    except BaseException:
        _stop(proc, broker)
        raise
    return proc, broker, base


def _stop(proc: Any, broker: Broker) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    broker.stop()


@pytest.fixture(scope="module")
def browser(box: Box) -> Iterator[Any]:
    drv = start_chrome(["--lang=en-US", "--window-size=1280,900"], {"goog:loggingPrefs": {"browser": "ALL"}})
    try:
        yield drv
    finally:
        drv.quit()


def _colour(browser: Any, css: str) -> str:
    colour: str = js(browser, "return getComputedStyle(document.querySelector(arguments[0])).color", css)
    return colour


def test_transcribe_with_speakers_labels_each_file(browser: Any, box: Box) -> None:
    ready(browser, box.base + "/#/transcribe")
    options = js(browser, "return Array.from(document.querySelectorAll('#tr-speakers option')).map(o => o.value)")
    assert options == ["", "auto", "2", "3", "4", "5", "6", "7", "8"]
    js(browser, "const s = document.getElementById('tr-speakers'); s.value = '2'; s.dispatchEvent(new Event('change'))")
    browser.find_element("id", "tr-files").send_keys(str(box.files["meeting"]))
    click(browser, "#tr-upload")
    done = "return document.querySelectorAll('article.job[data-status=done] tr[data-status=done]').length"
    wait(lambda: js(browser, done) == 1, 240, "the meeting done on the page")
    card = js(browser, "return document.querySelector('article.job[data-status=done]').dataset.id")
    job = fetch(browser, f"/api/jobs/{card}")["data"]
    assert str(job["options"]["speakers"]) == "2", job["options"]  # (stored as the number)
    labels = "return Array.from(document.querySelectorAll('.file-speakers .speaker')).map(e => e.dataset.speaker)"
    assert wait(lambda: js(browser, labels), 20, "the file's speakers") == ["S1", "S2"]
    rec = fetch(browser, f"/api/records/{job['files'][0]['record_id']}")["data"]["record"]
    assert {s.get("speaker") for s in rec["segments"]} == {"S1", "S2"}, rec["segments"]
    box.record, box.job = rec, card
    link = js(browser, "return document.querySelector('.file-speakers a').getAttribute('href')")
    assert link == f"#/history/record/{rec['id']}"
    assert js(browser, "return localStorage.getItem('asrbox.speakers')") == "2"  # remembered
    js(browser, "document.querySelector('article.job').scrollIntoView()")
    browser.save_screenshot(str(box.tmp / "transcribe.png"))


def test_record_colours_speakers_and_a_rename_shows_in_lines_and_export(browser: Any, box: Box) -> None:
    rec = box.record
    assert rec, "needs the transcribed meeting"
    ready(browser, f"{box.base}/#/history/record/{rec['id']}")
    shown = "return Array.from(document.querySelectorAll('#rec-segments .speaker')).map(e => e.textContent)"
    expected = [s["speaker"] + ": " for s in rec["segments"]]
    assert wait(lambda: js(browser, shown), 20, "the lines' speakers") == expected
    s1, s2 = "#rec-segments .speaker[data-speaker=S1]", "#rec-segments .speaker[data-speaker=S2]"
    assert _colour(browser, s1) != _colour(browser, s2)
    assert _colour(browser, s1) != _colour(browser, "#rec-segments .seg-text")  # coloured, not the text's colour
    swatch = js(
        browser, "return Array.from(document.querySelectorAll('#rec-speakers form')).map(f => f.dataset.speaker)"
    )
    assert swatch == ["S1", "S2"]

    name = browser.find_element("id", "rec-name-S1")
    name.send_keys("Ms Li\n")  # Enter stores it
    named = [("Ms Li: " if s["speaker"] == "S1" else "S2: ") for s in rec["segments"]]
    wait(lambda: js(browser, shown) == named, 20, "the name in the lines")
    assert _colour(browser, s1) != _colour(browser, s2)  # the colour follows the label, not the name
    browser.save_screenshot(str(box.tmp / "record.png"))
    assert fetch(browser, f"/api/records/{rec['id']}/speakers")["data"]["speakers"] == [
        {"label": "S1", "name": "Ms Li"},
        {"label": "S2", "name": None},
    ]
    assert "srt" in js(browser, "return Array.from(document.querySelectorAll('#rec-format option')).map(o => o.value)")
    srt = fetch(browser, "/api/records/export", "POST", {"ids": [rec["id"]], "format": "srt"})
    assert srt["status"] == 200 and "Ms Li: " in srt["data"] and "S2: " in srt["data"], srt
    assert "S1: " not in srt["data"]
    result = fetch(browser, f"/api/jobs/{box.job}/files/0/result?format=srt")["data"]  # the Transcribe page's link
    assert "Ms Li: " in result and "S1: " not in result, result

    browser.refresh()  # kept by the box; an empty name removes it
    wait(lambda: js(browser, shown) == named, 30, "the name after a reload")
    name = browser.find_element("id", "rec-name-S1")
    assert name.get_attribute("value") == "Ms Li"
    name.clear()
    name.send_keys("\n")
    wait(lambda: js(browser, shown) == expected, 20, "the label back in the lines")
    srt = fetch(browser, "/api/records/export", "POST", {"ids": [rec["id"]], "format": "srt"})
    assert "S1: " in srt["data"] and "Ms Li" not in srt["data"]

    js(browser, "localStorage.setItem('asrbox.lang', 'zh'); localStorage.setItem('asrbox.theme', 'dark')")
    try:  # in Chinese, on the dark theme: the lighter hues, still one per label
        browser.refresh()
        heading = "const e = document.getElementById('rec-speakers-h'); return e && e.textContent"
        wait(lambda: js(browser, heading) == "说话人", 30, "the record in Chinese")
        assert js(browser, "return document.querySelector('#rec-speakers button').textContent") == "命名"
        assert _colour(browser, s1) == "rgb(127, 200, 255)" and _colour(browser, s2) == "rgb(255, 184, 107)"
        browser.save_screenshot(str(box.tmp / "record-zh-dark.png"))
    finally:
        js(browser, "localStorage.removeItem('asrbox.lang'); localStorage.removeItem('asrbox.theme')")


def test_voices_enroll_list_and_delete_after_confirming(browser: Any, box: Box) -> None:
    ready(browser, box.base + "/#/voices")
    listed = "return Array.from(document.querySelectorAll('#vo-list li[data-name]')).map(e => e.dataset.name)"
    wait(lambda: js(browser, "return document.querySelector('#vo-list li') !== null"), 20, "the voices list")
    assert js(browser, listed) == []
    assert js(browser, "return document.getElementById('vo-nomodels').hidden") is True
    browser.find_element("id", "vo-name").send_keys("Mr Quilter")
    browser.find_element("id", "vo-file").send_keys(str(box.files["voice"]))
    click(browser, "#vo-enroll")
    wait(lambda: js(browser, listed) == ["Mr Quilter"], 60, "the enrolled voice in the list")
    voices = fetch(browser, "/api/speakers/voices")["data"]["voices"]
    assert [v["name"] for v in voices] == ["Mr Quilter"]
    browser.save_screenshot(str(box.tmp / "voices.png"))

    remove = "#vo-list li[data-name='Mr Quilter'] button"
    click(browser, remove)
    wait(lambda: js(browser, "return document.getElementById('confirm').open"), 10, "the confirmation")
    browser.find_element("css selector", "#confirm button[value=cancel]").click()
    assert [v["name"] for v in fetch(browser, "/api/speakers/voices")["data"]["voices"]] == ["Mr Quilter"]
    click(browser, remove)
    wait(lambda: js(browser, "return document.getElementById('confirm').open"), 10, "the confirmation")
    browser.find_element("id", "confirm-ok").click()
    wait(lambda: js(browser, listed) == [], 20, "the voice gone from the list")
    assert fetch(browser, "/api/speakers/voices")["data"]["voices"] == []


def test_live_captions_colour_speakers_and_a_session_rename_shows_at_once(browser: Any, box: Box) -> None:
    ready(browser, box.base + "/#/live")
    note = "return document.getElementById('live-speakers-note').textContent"
    wait(lambda: js(browser, "return document.getElementById('live-state').dataset.state") == "idle", 20, "state")
    assert js(browser, note) == "Start a session to name its speakers."
    browser.find_element("id", "live-session-name").send_keys("speakers on live")
    click(browser, "#live-session-start")
    sid = wait(lambda: fetch(browser, "/api/state")["data"].get("session_id"), 20, "the session")
    if fetch(browser, "/api/state")["data"].get("state") != "listening":
        click(browser, "#live-listen-on")
    spoken = (
        "return Array.from(document.querySelectorAll('#live-lines .line.final .speaker')).map(e => e.dataset.speaker)"
    )
    wait(lambda: len(set(js(browser, spoken))) >= 2, 150, "finals of two speakers on the page")
    first = "#live-lines .line.final .speaker[data-speaker=S1]"
    assert _colour(browser, first) != _colour(browser, "#live-lines .line.final .speaker[data-speaker=S2]")
    heard = "return Array.from(document.querySelectorAll('#live-speakers form')).map(f => f.dataset.speaker)"
    assert wait(lambda: js(browser, heard), 10, "the session's speakers")[:2] == ["S1", "S2"]

    browser.find_element("id", "live-name-S1").send_keys("Mr Wu\n")
    names = f"return Array.from(document.querySelectorAll('{first}')).map(e => e.textContent)"
    wait(lambda: set(js(browser, names)) == {"Mr Wu: "}, 20, "the name in the captions")
    speakers = fetch(browser, f"/api/sessions/{sid}/speakers")["data"]["speakers"]
    assert {"label": "S1", "name": "Mr Wu"} in speakers
    browser.save_screenshot(str(box.tmp / "live.png"))
    click(browser, "#live-session-stop")

    # History: the session's utterances with their speakers named, and a search by the name
    ready(browser, f"{box.base}/#/history/session/{sid}")
    shown = "return Array.from(document.querySelectorAll('#hist-view .records .speaker')).map(e => e.textContent)"
    got = wait(lambda: js(browser, shown), 20, "the session's records with their speakers")
    assert "Mr Wu: " in got and "S2: " in got and "S1: " not in got, got
    said = [r["id"] for r in fetch(browser, f"/api/records?session={sid}")["data"]["items"] if r["speaker"] == "S1"]
    ready(browser, f"{box.base}/#/history")
    searched = "return Number(document.getElementById('page-history').dataset.searched || 0)"
    before = js(browser, searched)
    browser.find_element("id", "hist-speaker").send_keys("Mr Wu\n")
    wait(lambda: js(browser, searched) > before, 20, "the search by speaker")
    found = js(browser, "return Array.from(document.querySelectorAll('#hist-list li.rec')).map(l => l.dataset.id)")
    assert said and sorted(found) == sorted(said), (found, said)


def test_every_page_loads_without_a_script_error(browser: Any, box: Box) -> None:
    """What the tests above did, and every page once more (Voices too), left no error in the browser's log."""
    for page in ("live", "transcribe", "history", "hotwords", "voices", "practice", "status"):
        ready(browser, f"{box.base}/#/{page}")
        heading = f"return document.querySelector('#page-{page} h1') && !document.getElementById('page-{page}').hidden"
        wait(lambda: js(browser, heading), 20, f"the {page} page")  # noqa: B023
    assert js(browser, "return document.querySelector('nav a[data-page=voices]').textContent") == "Voices"
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not severe, severe


def test_a_box_without_speaker_models_says_so_and_turns_enrolling_off(
    browser: Any, box: Box, tmp_path: Path, cache_dir: Path
) -> None:
    import shutil

    shutil.copy(box.files["mic"], tmp_path / "mic.wav")
    proc, broker, base = _start(tmp_path, cache_dir, ASRBOX_SPEAKERS__MODELS_DIR=str(tmp_path / "no-models"))
    try:
        ready(browser, base + "/#/voices")
        browser.find_element("id", "vo-name").send_keys("Mr Quilter")
        browser.find_element("id", "vo-file").send_keys(str(box.files["voice"]))
        click(browser, "#vo-enroll")
        note = wait(
            lambda: js(browser, "const n = document.getElementById('vo-nomodels'); return !n.hidden && n"),
            30,
            "the note",
        )
        assert "asrbox models prepare-speakers" in note.text
        assert js(browser, "return document.getElementById('vo-fields').disabled") is True
        assert fetch(browser, "/api/speakers/voices")["data"]["voices"] == []

        ready(browser, base + "/#/transcribe")
        js(browser, "document.getElementById('tr-speakers').value = 'auto'")
        browser.find_element("id", "tr-files").send_keys(str(box.files["meeting"]))
        click(browser, "#tr-upload")
        toast = "const t = document.getElementById('toast'); return !t.hidden && t.textContent"
        assert wait(lambda: js(browser, toast), 30, "the refusal").startswith("This box has no speaker models")
        assert fetch(browser, "/api/jobs")["data"]["items"] == []  # nothing stored
    finally:
        _stop(proc, broker)
