"""The GPIO thread: waits for button edges, drives the LED, hands actions to the app's main thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from daemon.errors import ConfigError
from daemon.gpio.button import ButtonLogic, pattern
from daemon.settings import GpioSettings

log = logging.getLogger(__name__)


class Lines(Protocol):
    """What the control needs from the hardware (libgpiod, or a fake in tests)."""

    def events(self, timeout_s: float) -> list[tuple[bool, int]]: ...  # (pressed, timestamp ns)
    def set_led(self, on: bool) -> None: ...
    def close(self) -> None: ...


class _Controls(Protocol):
    def submit(self, action: Callable[[], object]) -> None: ...
    def toggle_listening(self) -> Awaitable[None]: ...
    def new_session(self) -> Awaitable[None]: ...


class GpiodLines:
    """libgpiod v2: the button as an input with both edges, bias and kernel debounce; the LED as an output."""

    def __init__(self, s: GpioSettings) -> None:
        try:
            import gpiod
            from gpiod.line import Bias, Direction, Edge, Value
        except ImportError:
            raise ConfigError("config error: gpio.enabled needs the gpiod package (pip install gpiod)") from None
        self._value = Value
        config: dict[Any, Any] = {}
        if s.button_line is not None:
            config[s.button_line] = gpiod.LineSettings(
                direction=Direction.INPUT,
                edge_detection=Edge.BOTH,
                bias=Bias.PULL_UP if s.button_active_low else Bias.PULL_DOWN,
                active_low=s.button_active_low,
                debounce_period=timedelta(milliseconds=s.debounce_ms),
            )
        if s.led_line is not None:
            config[s.led_line] = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE)
        if not config:
            raise ConfigError("config error: gpio.enabled needs gpio.button_line and/or gpio.led_line")
        try:
            self._req = gpiod.request_lines(s.chip, consumer="asrbox", config=config)
        except OSError as exc:
            raise ConfigError(f"config error: gpio: cannot request lines on {s.chip}: {exc.strerror or exc}") from None
        self._button, self._led = s.button_line, s.led_line
        from gpiod.edge_event import EdgeEvent

        self._rising = EdgeEvent.Type.RISING_EDGE

    def events(self, timeout_s: float) -> list[tuple[bool, int]]:
        if self._button is None:
            time.sleep(timeout_s)
            return []
        if not self._req.wait_edge_events(timedelta(seconds=timeout_s)):
            return []
        # with active_low the kernel reports the logical level: rising = pressed
        return [(ev.event_type == self._rising, int(ev.timestamp_ns)) for ev in self._req.read_edge_events()]

    def set_led(self, on: bool) -> None:
        if self._led is not None:
            self._req.set_value(self._led, self._value.ACTIVE if on else self._value.INACTIVE)

    def close(self) -> None:
        self._req.release()


class GpioControl(threading.Thread):
    def __init__(self, s: GpioSettings, lines: Lines, controls: _Controls) -> None:
        super().__init__(name="gpio", daemon=True)
        self.settings = s
        self.lines = lines
        self.controls = controls
        self.logic = ButtonLogic(s.debounce_ms, s.long_press_ms)
        self._state = "idle"
        self._halt = threading.Event()
        self.presses: list[str] = []

    def show(self, state: str) -> None:
        self._state = state

    def run(self) -> None:
        lit: bool | None = None
        while not self._halt.is_set():
            try:
                for pressed, t_ns in self.lines.events(0.05):
                    kind = self.logic.feed(pressed, t_ns)
                    if kind is not None:
                        self.presses.append(kind)
                        self._act(kind)
                want = pattern(self._state).lit(int(time.monotonic() * 1000))
                if want != lit:
                    self.lines.set_led(want)
                    lit = want
            except OSError as exc:  # the chip went away: say so once a second, keep trying
                log.error("gpio: %s", exc)
                self._halt.wait(1.0)

    def _act(self, kind: str) -> None:
        if kind == "short":
            log.info("button: toggle listening")
            self.controls.submit(self.controls.toggle_listening)
        elif self.settings.long_press == "new_session":
            log.info("button: long press, new session")
            self.controls.submit(self.controls.new_session)

    def close(self) -> None:
        self._halt.set()
        self.join(1.0)
        self.lines.set_led(False)
        self.lines.close()


def start_gpio(s: GpioSettings, controls: _Controls) -> GpioControl:
    control = GpioControl(s, GpiodLines(s), controls)
    control.start()
    return control
