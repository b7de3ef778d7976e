"""The real daemon CLI with an ASR engine that can be made to hang: for crash tests that must not depend on CPU speed.

Usage: python tests/blocking_daemon.py GATE [--hold-until-drained] asrbox-arguments...

The engine is the real one (the configured engine, loaded as the daemon loads it) until the file GATE exists;
from then on every `transcribe` call blocks forever, so every utterance that ends afterwards stays a pending
row in the store, however fast or slow the machine. GATE "-" blocks from the first call. The test ends the
process with SIGKILL.

With --hold-until-drained, a call made once GATE exists computes its result and then holds it until the
daemon's shutdown has finished draining the outbox (a transcription that outlasts the worker's shutdown
deadline, at the worst moment); the harness prints "outbox drain returned at <UTC>" to stderr. Partials and
speculative finals are switched off, so the call held is always a final.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import daemon.core.app
from daemon.asr.engine import Engine, load_engine
from daemon.cli import main
from daemon.core.outbox import Outbox
from daemon.live.events import Job
from daemon.live.worker import AsrWorker
from daemon.settings import AsrSettings
from daemon.store.db import utc_now
from daemon.transcript import Audio, DecodeOptions, Transcript

drained = threading.Event()


class BlockingEngine:
    def __init__(self, real: Engine, gate: Path | None, hold: bool) -> None:
        self.real = real
        self.info = real.info
        self.gate = gate
        self.hold = hold
        self._never = threading.Event()

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        if self.gate is not None and not self.gate.exists():
            return self.real.transcribe(audios, options)
        if not self.hold:
            self._never.wait()  # hangs the ASR worker for good; only SIGKILL ends this process
        result = self.real.transcribe(audios, options)
        print(f"holding a final's result from {utc_now()}", file=sys.stderr, flush=True)
        drained.wait()
        return result

    def close(self) -> None:
        self.real.close()


def hold_until_drained() -> None:
    drain = Outbox.drain

    async def drain_then_release(self: Outbox, timeout: float) -> bool:
        ok = await drain(self, timeout)
        print(f"outbox drain returned at {utc_now()}", file=sys.stderr, flush=True)
        drained.set()
        return ok

    def no_job(self: AsrWorker, job: Job) -> None:
        pass

    Outbox.drain = drain_then_release  # type: ignore[method-assign]
    AsrWorker.add_partial = no_job  # type: ignore[method-assign]
    AsrWorker.add_speculative = no_job  # type: ignore[method-assign]


def run(argv: list[str]) -> int:
    gate = None if argv[0] == "-" else Path(argv[0])
    hold = argv[1:2] == ["--hold-until-drained"]
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every thread's stack on stderr
    if hold:
        hold_until_drained()

    def blocking(settings: AsrSettings) -> Engine:
        return BlockingEngine(load_engine(settings), gate, hold)

    daemon.core.app.load_engine = blocking  # the name App._build calls
    return main(argv[2:] if hold else argv[1:])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
