"""Button and LED logic, free of hardware: fed with edges and timestamps, it says what to do.

Timing comes from the kernel's event timestamps (nanoseconds), never the wall clock, so the logic is the
same in tests as on the box.
"""

from __future__ import annotations

from dataclasses import dataclass


class ButtonLogic:
    """Debounced press/release -> "short" or "long" (decided at release, by how long it was held)."""

    def __init__(self, debounce_ms: int, long_press_ms: int) -> None:
        self.debounce_ns = debounce_ms * 1_000_000
        self.long_ns = long_press_ms * 1_000_000
        self._pressed_at: int | None = None
        self._last_edge: int | None = None

    def feed(self, pressed: bool, t_ns: int) -> str | None:
        if self._last_edge is not None and t_ns - self._last_edge < self.debounce_ns:
            return None  # contact bounce
        self._last_edge = t_ns
        if pressed:
            if self._pressed_at is None:
                self._pressed_at = t_ns
            return None
        if self._pressed_at is None:
            return None  # a release without a press (started while held)
        held = t_ns - self._pressed_at
        self._pressed_at = None
        return "long" if held >= self.long_ns else "short"


@dataclass(frozen=True)
class LedPattern:
    on_ms: int
    off_ms: int  # 0 = steady

    def lit(self, t_ms: int) -> bool:
        if self.off_ms == 0:
            return self.on_ms > 0
        return t_ms % (self.on_ms + self.off_ms) < self.on_ms


# listening: steady on; idle: off; error: fast blink
PATTERNS = {"listening": LedPattern(1, 0), "idle": LedPattern(0, 0), "error": LedPattern(150, 150)}


def pattern(state: str) -> LedPattern:
    return PATTERNS.get(state, PATTERNS["idle"])
