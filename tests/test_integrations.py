"""Home Assistant discovery (golden file), the Hermes bridge and the GPIO button/LED logic."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from daemon import __version__
from daemon.gpio.button import ButtonLogic, pattern
from daemon.gpio.control import GpioControl
from daemon.integrations import hermes
from daemon.integrations.homeassistant import discovery_config, discovery_topic
from daemon.mqtt.topics import Topics
from daemon.settings import GpioSettings

GOLDEN = Path(__file__).parent / "golden"


def test_home_assistant_discovery_matches_golden_file() -> None:
    cfg = discovery_config(Topics("asrbox", "room1"), "Meeting room")
    text = json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True).replace(__version__, "<version>") + "\n"
    golden = GOLDEN / "ha_discovery_room1.json"
    if os.environ.get("ASRBOX_TEST_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    assert discovery_topic("homeassistant", "room1") == "homeassistant/device/asrbox_room1/config"


def test_home_assistant_contract_points() -> None:
    cfg = discovery_config(Topics("asrbox", "room1"))
    cmps = cfg["cmps"]
    assert {c["p"] for c in cmps.values()} == {"event", "sensor", "switch", "binary_sensor"}
    assert "[:255]" in cmps["last_transcript"]["value_template"]  # Home Assistant's state limit
    assert cmps["last_transcript"]["json_attributes_topic"] == "asrbox/room1/transcript/final"
    assert cfg["avty"][0]["t"] == "asrbox/room1/status"
    assert cmps["listening"]["command_topic"] == "asrbox/room1/cmd/listening"
    assert all(c["unique_id"].startswith("asrbox_room1_") for c in cmps.values())
    diag = [c for c in cmps.values() if c.get("entity_category") == "diagnostic"]
    assert {c["value_template"] for c in diag} == {
        "{{ value_json.backlog }}", "{{ value_json.disk_free_mb }}", "{{ value_json.latency_ms_p50 }}"
    }  # fmt: skip


def test_hermes_requests_for_our_site_only() -> None:
    ok = hermes.parse("hermes/asr/startListening", b'{"siteId": "kitchen", "sessionId": "s1"}', "kitchen")
    assert ok == hermes.HermesRequest("startListening", "s1", True)
    assert hermes.parse("hermes/asr/startListening", b'{"siteId": "hall"}', "kitchen") is None
    assert hermes.parse("hermes/asr/startListening", b"not json", "kitchen") is None
    assert hermes.parse("hermes/asr/unknown", b"{}", "default") is None
    assert hermes.parse("hermes/asr/stopListening", b"", "default") == hermes.HermesRequest("stopListening", None, True)
    b = hermes.HermesBridge("kitchen")
    assert b.handle(hermes.HermesRequest("toggleOff", None, True)) == "stop"
    assert b.handle(hermes.HermesRequest("startListening", "s1", True)) is None  # toggled off
    assert b.handle(hermes.HermesRequest("toggleOn", None, True)) is None
    assert b.handle(hermes.HermesRequest("startListening", "s2", False)) == "start"
    assert (b.session_id, b.stop_after_final) == ("s2", False)


def test_button_debounce_and_long_press() -> None:
    ms = 1_000_000
    logic = ButtonLogic(debounce_ms=30, long_press_ms=2000)
    assert logic.feed(True, 0) is None
    assert logic.feed(False, 5 * ms) is None  # bounce
    assert logic.feed(True, 10 * ms) is None  # bounce
    assert logic.feed(False, 300 * ms) == "short"
    assert logic.feed(True, 1000 * ms) is None
    assert logic.feed(False, 3500 * ms) == "long"
    assert logic.feed(False, 5000 * ms) is None  # release without press


def test_led_patterns() -> None:
    assert pattern("listening").lit(0) and pattern("listening").lit(12345)
    assert not pattern("idle").lit(0)
    err = pattern("error")
    assert err.lit(0) and not err.lit(200) and err.lit(300)


class FakeLines:
    """Stands in for the gpiod request: edges are pushed by the test; LED writes are recorded."""

    def __init__(self) -> None:
        self.pending: list[tuple[bool, int]] = []
        self.led: list[bool] = []
        self.closed = False
        self.lock = threading.Lock()

    def events(self, timeout_s: float) -> list[tuple[bool, int]]:
        with self.lock:
            out, self.pending = self.pending, []
        if not out:
            threading.Event().wait(timeout_s)
        return out

    def set_led(self, on: bool) -> None:
        self.led.append(on)

    def close(self) -> None:
        self.closed = True


class FakeControls:
    def __init__(self) -> None:
        self.actions: list[str] = []

    def submit(self, action: Any) -> None:
        self.actions.append(action.__name__)

    def toggle_listening(self) -> None: ...
    def new_session(self) -> None: ...


def test_gpio_control_turns_presses_into_actions_and_shows_state() -> None:
    lines, controls = FakeLines(), FakeControls()
    ctl = GpioControl(GpioSettings(enabled=True, button_line=3, led_line=4), lines, controls)
    ctl.start()
    ms = 1_000_000
    with lines.lock:
        lines.pending += [(True, 0), (False, 2 * ms), (False, 200 * ms), (True, 1000 * ms), (False, 3100 * ms)]
    ctl.show("listening")
    deadline = threading.Event()
    for _ in range(100):
        if len(controls.actions) >= 2 and True in lines.led:
            break
        deadline.wait(0.02)
    ctl.close()
    assert controls.actions == ["toggle_listening", "new_session"]
    assert ctl.presses == ["short", "long"]
    assert True in lines.led and lines.led[-1] is False and lines.closed  # off again once closed


SIM = Path("/sys/kernel/config/gpio-sim")


@pytest.mark.skipif(not SIM.is_dir(), reason="the kernel's gpio-sim is not available here (no configfs)")
def test_real_gpiod_path_on_gpio_sim(tmp_path: Path) -> None:
    """libgpiod v2 against a simulated chip: pulling the button line low (active-low, pressed) and high again
    gives a short press; the LED line follows the state. Runs only where gpio-sim is loaded (modprobe gpio-sim)."""
    import time

    from daemon.gpio.control import GpiodLines

    dev = SIM / f"asrbox{os.getpid()}"
    bank = dev / "bank0"
    bank.mkdir(parents=True)
    try:
        (bank / "num_lines").write_text("8")
        (dev / "live").write_text("1")
        chip = "/dev/" + (bank / "chip_name").read_text().strip()
        platform = Path("/sys/devices/platform") / (dev / "dev_name").read_text().strip()
        pull = platform / (bank / "chip_name").read_text().strip() / "sim_gpio2" / "pull"
        value = platform / (bank / "chip_name").read_text().strip() / "sim_gpio5" / "value"
        pull.write_text("pull-up")  # idle: not pressed
        lines = GpiodLines(GpioSettings(enabled=True, chip=chip, button_line=2, led_line=5, debounce_ms=1))
        controls = FakeControls()
        ctl = GpioControl(GpioSettings(enabled=True, button_line=2, led_line=5, debounce_ms=1), lines, controls)
        ctl.start()
        ctl.show("listening")
        pull.write_text("pull-down")  # pressed
        time.sleep(0.1)
        pull.write_text("pull-up")  # released
        for _ in range(100):
            if controls.actions and value.read_text().strip() == "1":
                break
            time.sleep(0.02)
        assert controls.actions == ["toggle_listening"]
        assert value.read_text().strip() == "1"
        ctl.close()
    finally:
        (dev / "live").write_text("0")
        bank.rmdir()
        dev.rmdir()


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        self.sent.append((topic, json.loads(payload)))
        return True

    def route(self, topic_filter: str, handler: Any) -> None: ...


class HubControls(FakeControls):
    session_id = None

    def start_listening(self) -> None: ...
    def stop_listening(self) -> None: ...


def test_hermes_errors_and_text_captured_stop_after_one(tmp_path: Path) -> None:
    from daemon.integrations.hub import Integrations
    from daemon.settings import load_settings
    from daemon.store.db import Store

    settings = load_settings(None, {"hermes": {"enabled": True, "site_id": "kitchen"}})
    client, controls = FakeClient(), HubControls()
    hub = Integrations(settings, Topics("asrbox", "box"), client, Store(tmp_path), controls)  # type: ignore[arg-type]
    hub._hermes_request(hermes.HermesRequest("startListening", "s9", True))
    hub.on_final("打开灯", "zh", 1.5, "rec1", 0.8)
    hub.on_failure("source_failed", "microphone vanished")
    topics = [t for t, _ in client.sent]
    assert topics == ["hermes/asr/textCaptured", "hermes/error/asr"]
    captured = client.sent[0][1]
    assert (captured["text"], captured["sessionId"], captured["siteId"]) == ("打开灯", "s9", "kitchen")
    assert client.sent[1][1] == {"error": "microphone vanished", "context": "source_failed", "siteId": "kitchen",
                                 "sessionId": "s9"}  # fmt: skip
    assert controls.actions == ["stop_listening"]  # stopOnSilence: one utterance, then stop
