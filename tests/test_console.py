"""The web console end to end: headless Chromium (Debian's, driven by Selenium) against one real daemon for the
module, bound to a non-loopback address with an admin password, so every page goes through the login and every
unsafe call carries the CSRF token. The browser can reach loopback only (a dead proxy for everything else) and
its network log must show no request to another host.

Files are uploaded through the page (two, into one held job) and watched to the end; History finds a Chinese
and an English word; an edit survives a reload with the recognizer's text still there; clicking a line seeks the
player; Live's buttons change the box's MQTT `state`; a wrong password is refused.
Set ASRBOX_TEST_SCREENSHOT=1 to refresh the screenshots in docs/ (desktop and phone, English and Chinese)."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import EVAL, ROOT, Broker, Recorder, free_port
from headless import CHROMIUM, DRIVER, start_chrome
from test_captions import wait
from test_daemon import ROOT_TOPIC, daemon_env, start_daemon

pytestmark = [
    pytest.mark.model,
    pytest.mark.broker,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
        reason="chromium/chromedriver not installed (scripts/test installs them)",
    ),
]
PASSWORD = "console-test-password"
ZH_CLIP = EVAL / "zh" / "zh_aishell1_BAC009S0764W0121.wav"  # 4.2 s
EN_PARTS = (  # joined with 2 s of silence: two segments, the second starting near 6 s
    EVAL / "en" / "en_librispeech_1272-128104-0001.wav",
    EVAL / "en" / "en_hifitts6097_glitteringplain_11_morris_0037.wav",
)
DESKTOP, PHONE = (1280, 900), (390, 844)


@dataclass
class Box:
    base: str
    broker: Broker
    tmp: Path
    files: dict[str, Path] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uploaded file name


def _audio(tmp: Path) -> dict[str, Path]:
    import numpy as np
    import soundfile as sf

    if not ZH_CLIP.is_file():
        pytest.skip(f"evaluation speech not found at {EVAL}")
    # the microphone: a Chinese sentence, then 20 s of silence, over and over (live finals for the captions,
    # and the engine mostly free for the uploaded files)
    mic = tmp / "mic.wav"
    zh_pcm = sf.read(ZH_CLIP, dtype="int16")[0]
    sf.write(mic, np.concatenate([np.zeros(16000, np.int16), zh_pcm, np.zeros(16000 * 20, np.int16)]), 16000)
    parts = [sf.read(p, dtype="int16")[0] for p in EN_PARTS]
    en = tmp / "two lines.wav"
    sf.write(en, np.concatenate([parts[0], np.zeros(32000, dtype=np.int16), parts[1]]), 16000)
    zh = tmp / "交易.wav"
    shutil.copy(ZH_CLIP, zh)
    return {"mic": mic, "en": en, "zh": zh}


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Box]:
    from daemon.http.passwords import write_hash

    tmp = tmp_path_factory.mktemp("console")
    files = _audio(tmp)
    write_hash(tmp / "admin.pw", PASSWORD)
    broker = Broker(tmp)
    broker.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    env.update(ASRBOX_STORE__PATH=str(tmp / "store"), ASRBOX_ASR__CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    extra = {
        "ASRBOX_HTTP__ENABLED": "true",
        "ASRBOX_HTTP__BIND": "0.0.0.0",  # not loopback: the console needs its password
        "ASRBOX_HTTP__PORT": str(port),
        "ASRBOX_HTTP__PASSWORD_FILE": str(tmp / "admin.pw"),
    }
    args = ("--source", str(files["mic"]), "--loops", "100000")
    proc = start_daemon(daemon_env(env, broker, **extra), *args, log=tmp / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: _status(base + "/health") == 200 or proc.poll() is not None, 120, "the daemon's HTTP face")
        assert proc.poll() is None, (tmp / "daemon.log").read_text()[-3000:]
        yield Box(base, broker, tmp, files)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        broker.stop()


@pytest.fixture(scope="module")
def browser(box: Box) -> Iterator[Any]:
    # Debian's driver, no Selenium Manager, no network at the start; Chromium's proxy on a dead loopback port
    # (loopback bypasses proxies), so the page reaches nothing else either
    drv = start_chrome(
        ["--lang=en-US", "--autoplay-policy=no-user-gesture-required", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"],
        {"goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"}},
    )
    try:
        yield drv
    finally:
        drv.quit()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def js(browser: Any, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def fetch(browser: Any, path: str, method: str = "GET", body: Any = None) -> Any:
    """A call from the page itself (its session cookie, the CSRF token from /api/me): the parsed JSON or text."""
    return browser.execute_async_script(
        """const [path, method, body, done] = arguments;
        (async () => {
          const me = await (await fetch('/api/me')).json();
          const headers = {'Content-Type': 'application/json'};
          if (me.csrf) headers['X-CSRF-Token'] = me.csrf;
          const r = await fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)});
          const text = await r.text();
          let data = text; try { data = JSON.parse(text); } catch (_) {}
          done({status: r.status, data});
        })().catch((e) => done({status: 0, data: String(e)}));""",
        path,
        method,
        body,
    )


def ready(browser: Any, url: str) -> None:
    """A fresh load of `url` (a change of the hash alone would not reload the page)."""
    browser.get("about:blank")
    browser.get(url)
    wait(lambda: js(browser, "return document.body.dataset.ready === '1'"), 30, f"{url} to be ready")


def click(browser: Any, css: str) -> None:
    el = wait(
        lambda: js(browser, "const e = document.querySelector(arguments[0]); return e && !e.disabled && e", css),
        20,
        css,
    )
    el.click()


def test_login_refuses_a_wrong_password_then_lets_the_right_one_in(browser: Any, box: Box) -> None:
    assert _status(box.base + "/api/state") == 401  # not loopback: nothing without a session or a key
    browser.get(box.base + "/#/live")
    wait(lambda: "/login" in browser.current_url, 30, "the redirect to the login page")
    wait(lambda: js(browser, "return document.body.dataset.ready === '1'"), 30, "the login page")
    browser.find_element("id", "password").send_keys("not the password")
    browser.find_element("id", "login-submit").click()
    error = wait(lambda: js(browser, "return document.getElementById('login-error').textContent"), 20, "the refusal")
    assert error == "Wrong password."
    assert "/login" in browser.current_url
    assert browser.get_cookie("asrbox_session") is None

    field = browser.find_element("id", "password")
    field.clear()
    field.send_keys(PASSWORD)
    browser.find_element("id", "login-submit").click()
    wait(lambda: "/login" not in browser.current_url, 30, "the way back after logging in")
    assert browser.current_url.endswith("/#/live")
    wait(lambda: js(browser, "return document.body.dataset.ready === '1'"), 30, "the console")
    assert browser.get_cookie("asrbox_session") is not None
    assert fetch(browser, "/api/me")["data"]["auth"] == "session"
    assert js(browser, "return document.getElementById('logout').hidden") is False


def test_upload_two_files_through_the_page_and_watch_them_finish(browser: Any, box: Box) -> None:
    ready(browser, box.base + "/#/transcribe")
    browser.find_element("id", "tr-name").send_keys("two files")
    browser.find_element("id", "tr-files").send_keys(f"{box.files['zh']}\n{box.files['en']}")
    wait(lambda: js(browser, "return document.querySelectorAll('#tr-picked li').length") == 2, 10, "two picked files")
    click(browser, "#tr-upload")
    wait(lambda: js(browser, "return document.querySelectorAll('#tr-picked li').length") == 0, 60, "the uploads")
    done = "return document.querySelectorAll('article.job[data-status=done] tr[data-status=done]').length"
    wait(lambda: js(browser, done) == 2, 300, "both files done on the page")
    card = js(browser, "return document.querySelector('article.job[data-status=done]').dataset.id")
    job = fetch(browser, f"/api/jobs/{card}")["data"]
    assert job["name"] == "two files" and job["status"] == "done"
    assert [f["name"] for f in job["files"]] == [box.files["zh"].name, box.files["en"].name]
    for f in job["files"]:
        rec = fetch(browser, f"/api/records/{f['record_id']}")["data"]["record"]
        box.records[f["name"]] = rec
    # the page links each result and the batch's one CSV
    links = js(
        browser, "return Array.from(document.querySelectorAll('article.job a')).map(a => a.getAttribute('href'))"
    )
    assert f"/api/jobs/{card}/results.csv" in links and f"/api/jobs/{card}/results.zip" in links
    assert f"/api/jobs/{card}/files/1/result?format=srt" in links
    csv = fetch(browser, f"/api/jobs/{card}/results.csv")["data"]  # (the text decoder drops the BOM)
    assert box.files["zh"].name in csv and box.files["en"].name in csv
    head = browser.execute_async_script(
        "fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => arguments[1](Array.from(new Uint8Array(b, 0, 3))))",
        f"/api/jobs/{card}/results.csv",
    )
    assert bytes(head) == b"\xef\xbb\xbf"  # UTF-8 with a BOM: Excel reads Chinese right


def _search(browser: Any, word: str) -> list[str]:
    before = js(browser, "return Number(document.getElementById('page-history').dataset.searched || 0)")
    q = browser.find_element("id", "hist-q")
    q.clear()
    q.send_keys(word + "\n")
    searched = "return Number(document.getElementById('page-history').dataset.searched || 0)"
    wait(lambda: js(browser, searched) > before, 20, f"the search for {word!r}")
    ids: list[str] = js(
        browser, "return Array.from(document.querySelectorAll('#hist-list li.rec')).map(l => l.dataset.id)"
    )
    return ids


def test_search_finds_a_chinese_and_an_english_word(browser: Any, box: Box) -> None:
    zh, en = box.records[box.files["zh"].name], box.records[box.files["en"].name]
    assert zh["language"] == "zh" and en["language"] == "en"
    zh_word = re.findall(r"[\u4e00-\u9fff]{2}", zh["text"])[1]  # two characters from inside the sentence
    en_word = max(re.findall(r"[A-Za-z]+", en["text"]), key=len)
    ready(browser, box.base + "/#/history")
    found = _search(browser, zh_word)
    assert zh["id"] in found and en["id"] not in found, (zh_word, found)
    marks = js(browser, "return Array.from(document.querySelectorAll('#hist-list mark')).map(m => m.textContent)")
    assert zh_word in marks
    found = _search(browser, en_word.lower())
    assert en["id"] in found and zh["id"] not in found, (en_word, found)
    assert _search(browser, "zzzqqxnothing") == []
    assert js(browser, "return document.getElementById('hist-count').textContent") == "Nothing found."


def test_an_edit_persists_after_reload_and_the_raw_text_is_kept(browser: Any, box: Box) -> None:
    en = box.records[box.files["en"].name]
    ready(browser, f"{box.base}/#/history/record/{en['id']}")
    wait(lambda: js(browser, "return document.querySelectorAll('#rec-segments li.seg').length") >= 2, 20, "segments")
    click(browser, "#rec-edit")
    area = browser.find_element("css selector", "textarea.seg-edit")
    area.clear()
    area.send_keys("Nor is the console test less interesting than its matter.")
    click(browser, "#rec-save")
    first = "const s = document.querySelector('.seg-text'); return s && s.textContent"
    wait(
        lambda: js(browser, first) == "Nor is the console test less interesting than its matter.", 20, "the saved edit"
    )
    browser.refresh()
    wait(
        lambda: js(browser, first) == "Nor is the console test less interesting than its matter.",
        30,
        "the edit after a reload",
    )
    assert js(browser, "return document.getElementById('rec-raw').textContent") == en["raw_text"]
    rec = fetch(browser, f"/api/records/{en['id']}")["data"]["record"]
    assert rec["text"].startswith("Nor is the console test") and rec["edited_at"]
    assert rec["raw_text"] == en["raw_text"] and "console test" not in rec["raw_text"]
    assert rec["segments"][1]["text"] == en["segments"][1]["text"]  # untouched lines stay as they were
    edits = fetch(browser, f"/api/records/{en['id']}/edits")["data"]["items"]
    assert len(edits) == 1 and edits[0]["old_text"] == en["text"]


def test_clicking_a_line_seeks_the_player(browser: Any, box: Box) -> None:
    en = box.records[box.files["en"].name]
    ready(browser, f"{box.base}/#/history/record/{en['id']}")
    wait(
        lambda: js(browser, "const a = document.getElementById('rec-audio'); return a && a.readyState >= 1"),
        20,
        "audio",
    )
    duration = js(browser, "return document.getElementById('rec-audio').duration")
    assert abs(duration - 11.66) < 0.1  # the file itself, through the Range endpoint
    second = en["segments"][1]
    assert second["start"] > 3, en["segments"]
    buttons = browser.find_elements("css selector", "#rec-segments .seg-play")
    buttons[1].click()
    at = js(browser, "return document.getElementById('rec-audio').currentTime")
    assert second["start"] - 0.05 <= at < second["end"], (at, second)
    playing = (
        "return Array.from(document.querySelectorAll('#rec-segments li.seg')).map(l => l.classList.contains('playing'))"
    )
    assert js(browser, playing) == [False, True]
    buttons[0].click()
    assert js(browser, "return document.getElementById('rec-audio').currentTime") < 1.0
    assert js(browser, playing)[0] is True


def test_live_captions_show_the_box_s_finals(browser: Any, box: Box) -> None:
    ready(browser, box.base + "/#/live")
    finals = "return Array.from(document.querySelectorAll('#live-lines .line.final')).map(e => e.textContent)"
    got = wait(lambda: js(browser, finals), 90, "a live final on the page")
    assert re.search(r"[\u4e00-\u9fff]{4}", got[0]), got  # the Chinese sentence the microphone plays
    grey = js(
        browser,
        "const p = document.createElement('p'); p.className = 'line partial';"
        " document.getElementById('live-lines').append(p); const c = getComputedStyle(p).color; p.remove(); return c",
    )
    assert grey != js(browser, "return getComputedStyle(document.querySelector('#live-lines .line.final')).color")


def test_practice_records_on_the_box_microphone_and_scores_per_character(browser: Any, box: Box) -> None:
    target = "甚至出现交易几乎停滞的情况"  # what the box's microphone plays every 25 s
    ready(browser, box.base + "/#/practice")
    browser.find_element("id", "pr-target").send_keys(target)
    browser.find_element("id", "pr-learner").send_keys("小明")
    click(browser, "#pr-record")
    wait(lambda: js(browser, "return document.getElementById('pr-score')"), 90, "the score on the page")
    units = js(
        browser, "return Array.from(document.querySelectorAll('#pr-result li.unit .exp')).map(e => e.textContent)"
    )
    assert "".join(u for u in units if u != "·") == target
    pinyin = js(
        browser, "return Array.from(document.querySelectorAll('#pr-result li.unit .py')).map(e => e.textContent)"
    )
    assert pinyin[:2] == ["shen4", "zhi4"], pinyin  # with tones
    score = int(js(browser, "return document.getElementById('pr-score').textContent"))
    rows = "return Array.from(document.querySelectorAll('#pr-attempts tr')).map(r => r.textContent)"
    wait(lambda: any("小明" in r and target in r for r in js(browser, rows)), 20, "the attempt in the list")
    attempts = fetch(browser, "/api/practice/attempts?learner=小明")["data"]["items"]
    assert len(attempts) == 1 and attempts[0]["score"] == score and attempts[0]["target"] == target
    assert fetch(browser, "/api/practice/score", "POST", {"target": "x", "record_id": "nope"})["status"] == 404
    assert fetch(browser, "/api/practice/score", "POST", {"target": " ", "record_id": "nope"})["status"] == 422


def test_start_and_stop_from_the_page_change_the_mqtt_state(browser: Any, box: Box) -> None:
    rec = Recorder(box.broker.port, f"{ROOT_TOPIC}/state")
    try:
        ready(browser, box.base + "/#/live")
        if js(browser, "return document.getElementById('live-state').dataset.state") != "listening":
            click(browser, "#live-listen-on")  # (practice ended its session)
        assert rec.wait_for(lambda m: m and json.loads(m[-1][1]).get("state") == "listening", 30), rec.messages[-3:]
        click(browser, "#live-listen-off")
        assert rec.wait_for(lambda m: json.loads(m[-1][1]).get("state") == "idle", 30), rec.messages[-3:]
        wait(lambda: js(browser, "return document.getElementById('state-badge').dataset.state") == "idle", 10, "badge")
        click(browser, "#live-listen-on")
        assert rec.wait_for(lambda m: json.loads(m[-1][1]).get("state") == "listening", 30), rec.messages[-3:]
        wait(
            lambda: js(browser, "return document.getElementById('live-state').dataset.state") == "listening",
            10,
            "state",
        )
        wait(lambda: js(browser, "return document.getElementById('live-meter').value") > -70 or
             js(browser, "return document.getElementById('live-level-text').textContent").startswith("RMS"),
             20, "a level event")  # fmt: skip
    finally:
        rec.close()


def test_hotwords_add_remove_import(browser: Any, box: Box) -> None:
    ready(browser, box.base + "/#/hotwords")
    chips = "return Array.from(document.querySelectorAll('#hw-list li span')).map(e => e.textContent)"
    browser.find_element("id", "hw-new").send_keys("钉钉，Kubernetes\n")
    wait(lambda: js(browser, chips) == ["钉钉", "Kubernetes"], 20, "two hotwords on the page")
    assert fetch(browser, "/api/hotwords")["data"]["terms"] == ["钉钉", "Kubernetes"]
    browser.find_element("css selector", "#hw-list button[aria-label='Remove 钉钉']").click()
    wait(lambda: js(browser, chips) == ["Kubernetes"], 20, "the removal")
    terms = box.tmp / "terms.txt"
    terms.write_text("通义千问\nKubernetes\n", encoding="utf-8")
    browser.find_element("id", "hw-file").send_keys(str(terms))
    wait(lambda: js(browser, chips) == ["Kubernetes", "通义千问"], 20, "the imported file")
    assert fetch(browser, "/api/hotwords")["data"]["terms"] == ["Kubernetes", "通义千问"]
    ready(browser, box.base + "/#/live")
    live = "return Array.from(document.querySelectorAll('#live-hotwords li')).map(e => e.textContent)"
    wait(lambda: js(browser, live) == ["Kubernetes", "通义千问"], 20, "the hotwords in force on Live")
    assert fetch(browser, "/api/hotwords", "PUT", {"terms": []})["status"] == 200


def test_delete_asks_first(browser: Any, box: Box) -> None:
    zh = box.records[box.files["zh"].name]
    ready(browser, f"{box.base}/#/history/record/{zh['id']}")
    click(browser, "#rec-delete")
    wait(lambda: js(browser, "return document.getElementById('confirm').open"), 10, "the confirmation")
    browser.find_element("css selector", "#confirm button[value=cancel]").click()
    assert fetch(browser, f"/api/records/{zh['id']}")["status"] == 200
    click(browser, "#rec-delete")
    wait(lambda: js(browser, "return document.getElementById('confirm').open"), 10, "the confirmation")
    browser.find_element("id", "confirm-ok").click()
    wait(lambda: browser.current_url.endswith("/#/history"), 20, "the way back to the list")
    assert fetch(browser, f"/api/records/{zh['id']}")["status"] == 404


def test_every_page_works_offline_and_asks_nothing_of_another_host(browser: Any, box: Box) -> None:
    browser.get_log("performance")  # start from here
    browser.get_log("browser")
    for page in ("live", "transcribe", "history", "hotwords", "practice", "status"):
        ready(browser, f"{box.base}/#/{page}")
        heading = f"return document.querySelector('#page-{page} h1') && !document.getElementById('page-{page}').hidden"
        wait(lambda: js(browser, heading), 20, f"the {page} page")  # noqa: B023
    wait(lambda: js(browser, "return document.querySelectorAll('#st-summary .tile').length") >= 4, 20, "status tiles")
    hosts = set()
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            if not url.startswith(("data:", "blob:")):
                hosts.add(urllib.parse.urlsplit(url).hostname)
    assert hosts == {"127.0.0.1"}, hosts
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not severe, severe
    with urllib.request.urlopen(box.base + "/") as r:
        csp = r.headers["Content-Security-Policy"]
        page = r.read().decode()
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert "http://" not in page and "https://" not in page


def test_page_weight_and_caching(box: Box) -> None:
    """Every asset the console ships, gzipped as served: under 300 KB in all; assets cached for a year."""
    from daemon.http.console import ROOT as ASSETS
    from daemon.http.console import build_id

    total = 0
    for p in sorted(ASSETS.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(ASSETS).as_posix()
        req = urllib.request.Request(
            f"{box.base}/static/console/{build_id()}/{rel}", headers={"Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(req) as r:
            body = r.read()
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable", rel
            shipped = (
                p.read_bytes().replace(b"__BUILD__", build_id().encode()) if p.suffix == ".html" else p.read_bytes()
            )
            assert (gzip.decompress(body) if r.headers.get("Content-Encoding") == "gzip" else body) == shipped, rel
        total += len(body)
    assert total <= 300 * 1024, total
    assert _status(f"{box.base}/static/console/{build_id()}/../../../daemon/settings.py") == 404
    assert _status(f"{box.base}/static/console/{build_id()}/js/") == 404


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_screenshots_desktop_and_phone(browser: Any, box: Box, lang: str) -> None:
    en = box.records[box.files["en"].name]
    ready(browser, box.base + "/#/live")
    js(browser, "localStorage.setItem('asrbox.lang', arguments[0]); localStorage.removeItem('asrbox.theme')", lang)
    shots = {
        "desktop": (DESKTOP, "/#/transcribe" if lang == "en" else f"/#/history/record/{en['id']}"),
        "phone": (PHONE, "/#/history" if lang == "en" else "/#/live"),
    }
    try:
        for kind, ((w, h), url) in shots.items():
            browser.set_window_size(w, h)
            ready(browser, box.base + url)
            assert js(browser, "return document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en")
            nav = js(browser, "return document.querySelector('nav a[data-page=history]').textContent")
            assert nav == ("历史" if lang == "zh" else "History")
            wait(lambda: js(browser, "return !document.querySelector('[aria-busy=true]')"), 10, "the page")
            shot = box.tmp / f"console-{kind}-{lang}.png"
            browser.save_screenshot(str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("ASRBOX_TEST_SCREENSHOT"):
                shutil.copy(shot, ROOT / "docs" / shot.name)
    finally:
        browser.set_window_size(*DESKTOP)
        js(browser, "localStorage.removeItem('asrbox.lang')")
