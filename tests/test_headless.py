"""The page tests' browser start reaches nothing but loopback (tests/headless.py), and its audit really fails."""

from __future__ import annotations

import os
import socket
import sys

import pytest
from headless import CHROMIUM, DRIVER, no_network, start_chrome


def test_the_audit_flags_other_addresses_lookups_and_selenium_manager() -> None:
    # the events are raised by hand: nothing is sent anywhere
    with pytest.raises(AssertionError) as info, no_network("this block"):
        sys.audit("socket.connect", None, ("192.0.2.7", 443))
        sys.audit("socket.getaddrinfo", "download.pytorch.org", 443, 0, 0, 0)
        sys.audit(
            "subprocess.Popen", "/x/selenium/webdriver/common/linux/selenium-manager", ["selenium-manager"], None, None
        )
    message = str(info.value)
    assert "this block tried the network" in message
    assert "192.0.2.7:443" in message and "download.pytorch.org" in message and "Selenium Manager" in message


def test_loopback_is_allowed_and_the_audit_stops_after_the_block() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, no_network("loopback") as found:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port)):
            pass
        sys.audit("socket.connect", None, ("::1", port, 0, 0))
    assert found == []
    sys.audit("socket.connect", None, ("192.0.2.7", 443))  # outside a block: not recorded, nothing raised


@pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"), reason="chromium/chromedriver missing")
def test_starting_chromium_tries_no_network() -> None:
    drv = start_chrome()  # raises if the start looked up or connected to anything but loopback
    try:
        assert os.environ["SE_AVOID_STATS"] == "true"
        assert drv.service.path == DRIVER
        drv.get("about:blank")
    finally:
        drv.quit()
