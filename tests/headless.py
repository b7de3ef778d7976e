"""Headless Chromium for the page tests: Debian's chromium and chromedriver, started without the network.

Selenium 4 runs "Selenium Manager" (a driver lookup that downloads, and sends usage statistics) unless it is given
the driver's path; we always give Debian's, set SE_AVOID_STATS and SE_OFFLINE in case, and audit the start: a
DNS lookup of or a connection to anything but loopback, or Selenium Manager being run, fails the test. Chromium
itself gets a proxy on loopback where nothing listens, so a page can reach loopback (which bypasses proxies) and
nothing else.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")
DRIVER = "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else shutil.which("chromedriver")
BASE_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--proxy-server=http://127.0.0.1:9",  # nothing but loopback (which bypasses proxies) is reachable
)

_seen: list[str] | None = None  # what the audit hook found while a start is being watched


def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    seen = _seen
    if seen is None:
        return
    if event == "socket.connect" and isinstance(args[1], tuple) and not _loopback(args[1][0]):
        seen.append(f"connect to {args[1][0]}:{args[1][1]}")
    host = args[0].decode() if event == "socket.getaddrinfo" and isinstance(args[0], bytes) else args[0]
    if event == "socket.getaddrinfo" and not _loopback(host):
        seen.append(f"DNS lookup of {host}")
    if event == "subprocess.Popen" and "selenium-manager" in " ".join(map(str, [args[0], *(args[1] or [])])):
        seen.append(f"Selenium Manager run: {args[1]}")


_hooked = False


@contextlib.contextmanager
def no_network(what: str) -> Iterator[list[str]]:
    """Fail if, inside the block, this process tries a non-loopback address or runs Selenium Manager. (An audit
    hook cannot be removed: one is installed for the process, and records only inside this block.)"""
    global _seen, _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    _seen = found = []
    try:
        yield found
    finally:
        _seen = None
    if found:
        raise AssertionError(f"{what} tried the network: {found}")


def start_chrome(args: Iterable[str] = (), capabilities: dict[str, Any] | None = None) -> Any:
    """A headless Chromium driven by Debian's chromedriver (path given: Selenium Manager never runs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"
    os.environ["SE_OFFLINE"] = "true"
    if not (CHROMIUM and DRIVER):
        raise AssertionError("chromium and chromedriver are needed (ASRBOX_BROWSER=1 scripts/setup installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (*BASE_ARGS, *args):
        opts.add_argument(a)
    for key, value in (capabilities or {}).items():
        opts.set_capability(key, value)
    drv = None
    try:
        with no_network("starting selenium"):
            drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    except BaseException:
        if drv is not None:
            drv.quit()
        raise
    return drv
