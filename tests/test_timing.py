"""True time: finals after an idle period and after lost audio carry their true stream position.

The daemon runs in-process (real engine, real store, real Mosquitto) on real speech played by a paced source
whose clock the test knows; listening starts only after 10+ s of stream, and later a stretch of samples is
lost (as a microphone overflow loses them). Every final is compared with the offline segmentation of the
audio the live path was given (the same VAD and segmenter, started afresh where listening started and after
the loss, as the live path does): start and end within 100 ms of their place in the stream.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from conftest import Broker, Recorder, eval_clip

from daemon.audio.block import Block
from daemon.audio.decode import SAMPLE_RATE, decode_file
from daemon.audio.segmenter import Utterance, segment_stream
from daemon.audio.vad import SileroVad
from daemon.core.app import App
from daemon.settings import VadSettings, load_settings

DEVICE = "timing"
SPEED = 4.0
BLOCK = SAMPLE_RATE // 10
TOLERANCE_S = 0.1


class PacedClip:
    """A recording played at SPEED; samples in [lose_at, lose_at + lose) are lost (the offsets jump over them).
    At `hold_at` it stops delivering (`held` is set) until `release()`, so the test knows exactly where in the
    stream listening starts. Its clock leaves the hold out."""

    name = "paced"

    def __init__(self, audio: np.ndarray, hold_at: int, lose_at: int, lose: int) -> None:
        self.audio, self.hold_at, self.lose_at, self.lose = audio, hold_at, lose_at, lose
        self.pos = 0
        self.wall0 = 0.0
        self.mono0 = 0.0
        self.held = threading.Event()
        self._go = threading.Event()

    def open(self) -> None:
        self.wall0, self.mono0 = time.time(), time.monotonic()

    def release(self) -> None:
        self._go.set()

    def read(self) -> Block | None:
        if self.pos == self.hold_at and not self._go.is_set():
            self.held.set()
            t0 = time.monotonic()
            self._go.wait(60)
            self.wall0 += time.monotonic() - t0
            self.mono0 += time.monotonic() - t0
        if self.lose_at <= self.pos < self.lose_at + self.lose:
            self.pos = self.lose_at + self.lose  # lost: never delivered, the next block is stamped after the gap
        if self.pos >= self.audio.size:
            return None
        block = Block(self.pos, self.audio[self.pos : self.pos + BLOCK])
        self.pos = block.end
        delay = self.mono0 + self.pos / (SAMPLE_RATE * SPEED) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return block

    def wall_time(self, sample: int) -> float:
        return self.wall0 + sample / (SAMPLE_RATE * SPEED)

    def close(self) -> None:
        pass


def stream_s(src: PacedClip, iso: str) -> float:
    """A final's ISO time back to seconds of stream."""
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    return (t - src.wall0) * SPEED


def pause_after(utts: list[Utterance], t_s: float) -> int:
    """A block boundary in the middle of the first pause between utterances after `t_s` seconds."""
    for a, b in itertools.pairwise(utts):
        if a.end / SAMPLE_RATE > t_s:
            return (a.end + b.start) // 2 // BLOCK * BLOCK
    raise AssertionError("no pause found")


def segments(audio: np.ndarray, begin: int, end: int) -> list[Utterance]:
    """Offline segmentation of audio[begin:end] with a fresh VAD, offsets in the whole stream."""
    piece = audio[begin:end]
    blocks = (piece[i : i + BLOCK] for i in range(0, piece.size, BLOCK))
    return [
        Utterance(u.start + begin, u.end + begin, u.audio, u.last_voiced + begin, u.split)
        for u in segment_stream(blocks, SileroVad(), VadSettings(), pad_end=False)
    ]


def test_times_after_idle_and_lost_audio_are_true(broker: Broker, env: dict[str, str]) -> None:
    audio = decode_file(eval_clip("en_long_concat_hifitts6097")[0])
    whole = segments(audio, 0, audio.size)
    start_at = pause_after(whole, 10.0)  # idle for the first 10+ s
    inside = next(u for u in whole if u.start / SAMPLE_RATE > 45.0)  # lose 1.5 s in the middle of this one
    lose_at, lose = (inside.start + inside.last_voiced) // 2 // BLOCK * BLOCK, 15 * BLOCK
    ref = segments(audio, start_at, lose_at) + segments(audio, lose_at + lose, audio.size)
    src = PacedClip(audio, start_at, lose_at, lose)
    settings = load_settings(
        None,
        {
            "mqtt": {"port": broker.port, "host": "127.0.0.1", "device_id": DEVICE},
            "store": {"path": Path(env["ASRBOX_STORE__PATH"])},
            "asr": {"cache_dir": Path(env["ASRBOX_ASR__CACHE_DIR"])},
            "session": {"listen_on_start": False},
        },
    )
    rec = Recorder(broker.port, f"asrbox/{DEVICE}/transcript/final")
    app = App(settings, src, exit_at_end=True)  # type: ignore[arg-type]
    runner = threading.Thread(target=app.run)
    runner.start()
    try:
        assert src.held.wait(120), "the source did not play"
        app.submit(app.start_listening)
        assert rec.wait_for(lambda m: app.listening, 10)  # the loop has asked the listener to start here
    finally:
        src.release()
        runner.join(300)
    assert not runner.is_alive()
    finals = rec.payloads("/transcript/final")
    rec.close()
    expected = [u for u in ref if u.end < lose_at or u.start >= lose_at + lose]
    assert len(expected) >= 8 and len(finals) == len(ref)
    got = [(stream_s(src, f["started_at"]), stream_s(src, f["ended_at"]), f["text"]) for f in finals]
    assert got and got[0][0] * SAMPLE_RATE >= start_at - 0.5 * SAMPLE_RATE  # nothing from before the start
    for u in expected:  # each reference utterance has a final at its true position
        start, end = u.start / SAMPLE_RATE, u.end / SAMPLE_RATE
        near = min(got, key=lambda g: abs(g[0] - start))
        assert abs(near[0] - start) <= TOLERANCE_S and abs(near[1] - end) <= TOLERANCE_S, (start, end, near)
    # the utterance cut by the lost audio ends where the audio was lost, the rest starts after the gap
    cut = [g for g in got if inside.start / SAMPLE_RATE - TOLERANCE_S <= g[0] < (lose_at + lose) / SAMPLE_RATE]
    assert cut and all(g[1] <= lose_at / SAMPLE_RATE + TOLERANCE_S for g in cut)
