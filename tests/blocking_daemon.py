"""The real daemon CLI with an ASR engine that can be made to hang: for crash tests that must not depend on CPU speed.

Usage: python tests/blocking_daemon.py GATE asrbox-arguments...

The engine is the real one (the configured engine, loaded as the daemon loads it) until the file GATE exists;
from then on every `transcribe` call blocks forever, so every utterance that ends afterwards stays a pending
row in the store, however fast or slow the machine. GATE "-" blocks from the first call. The test ends the
process with SIGKILL.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import daemon.core.app
from daemon.asr.engine import Engine, load_engine
from daemon.cli import main
from daemon.settings import AsrSettings
from daemon.transcript import Audio, DecodeOptions, Transcript


class BlockingEngine:
    def __init__(self, real: Engine, gate: Path | None) -> None:
        self.real = real
        self.info = real.info
        self.gate = gate
        self._never = threading.Event()

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        if self.gate is None or self.gate.exists():
            self._never.wait()  # hangs the ASR worker for good; only SIGKILL ends this process
        return self.real.transcribe(audios, options)

    def close(self) -> None:
        self.real.close()


def run(argv: list[str]) -> int:
    gate = None if argv[0] == "-" else Path(argv[0])

    def blocking(settings: AsrSettings) -> Engine:
        return BlockingEngine(load_engine(settings), gate)

    daemon.core.app.load_engine = blocking  # the name App._build calls
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
