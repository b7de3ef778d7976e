"""A physical push button (start/stop) and a status LED on GPIO lines, through libgpiod v2."""
