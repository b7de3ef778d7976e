"""The live caption page end to end: headless Chromium (Debian's, driven by Selenium) loads the page from
the daemon's HTTP server, connects to a real Mosquitto over WebSockets and shows what the daemon hears from a
recording: grey partials, solid finals; it survives a broker restart; large-font mode."""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Broker, eval_clip, free_port
from headless import CHROMIUM, DRIVER, start_chrome
from test_daemon import DEVICE, daemon_env, start_daemon

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
    reason="chromium/chromedriver not installed (scripts/test installs them)",
)


@pytest.fixture()
def browser() -> Iterator[Any]:
    drv = start_chrome(["--window-size=1280,720"])  # Debian's driver, no Selenium Manager, no network
    try:
        yield drv
    finally:
        drv.quit()


def wait(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_caption_page_live_partials_finals_reconnect(browser: Any, env: dict[str, str], tmp_path: Path) -> None:
    ws = free_port()
    broker = Broker(tmp_path, extra=f"listener {ws} 127.0.0.1\nprotocol websockets\n")
    broker.start()
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    http = free_port()
    extra = {
        "ASRBOX_CAPTIONS__ENABLED": "true",
        "ASRBOX_CAPTIONS__PORT": str(http),
        "ASRBOX_CAPTIONS__WEBSOCKET_URL": f"ws://127.0.0.1:{ws}",
    }
    proc = start_daemon(daemon_env(env, broker, **extra), "--source", str(wav), log=tmp_path / "d.log")
    try:
        base = f"http://127.0.0.1:{http}/"
        wait(lambda: _get(base) is not None, 60, "the caption server")
        assert f'"device_id": "{DEVICE}"' in (_get(base + "config.json") or "")
        assert _get(base + "vendor/") is None  # no directory listings
        browser.get(base + "?large=1")
        # record every partial the page ever shows (they are replaced quickly by finals)
        browser.execute_script(
            "window.seen = {partial: 0}; new MutationObserver(() => {"
            " window.seen.partial += document.querySelectorAll('.line.partial').length; })"
            ".observe(document.getElementById('lines'), {subtree: true, childList: true, attributes: true,"
            " characterData: true});"
        )
        status = lambda: browser.execute_script("return document.getElementById('status').dataset.state")  # noqa: E731
        wait(lambda: status() == "live", 30, "the page to connect")
        finals = lambda: browser.execute_script(  # noqa: E731
            "return Array.from(document.querySelectorAll('.line.final')).map(e => e.textContent)"
        )
        wait(lambda: len(finals()) >= 2, 90, "two finals on the page")
        assert browser.execute_script("return window.seen.partial") > 0, "no partial was shown"
        assert browser.execute_script("return document.body.classList.contains('large')")
        grey = browser.execute_script(
            "const p = document.createElement('p'); p.className = 'line partial'; document.body.appendChild(p);"
            " const c = getComputedStyle(p).color; p.remove(); return c"
        )
        solid = browser.execute_script("return getComputedStyle(document.querySelector('.line.final')).color")
        assert grey != solid

        broker.stop()  # the page must notice and come back by itself
        wait(lambda: status() == "reconnecting", 20, "the page to notice the broker is gone")
        before = len(finals())
        broker.start()
        wait(lambda: status() == "live", 30, "the page to reconnect")
        wait(lambda: len(finals()) > before, 90, "a final after the reconnect")
        shot = tmp_path / "captions.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("ASRBOX_TEST_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "captions.png")
        text = " ".join(finals()).lower()
        assert "friends" in text or "battle" in text or "number" in text, text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        broker.stop()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return str(r.read().decode())
    except (urllib.error.URLError, OSError):
        return None
