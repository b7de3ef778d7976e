#!/usr/bin/env python3
"""A Wyoming request's latency (audio-stop sent -> transcript received) against the engine's own decode time of
the same clip, in the same run, interleaved: what the Wyoming path (temporary WAV, VAD, shared-engine queue, text
pipeline, record) costs on top of recognition.

    .venv/bin/python scripts/bench_wyoming.py [--clip ID] [--runs 7]

The daemon runs as a subprocess (listening off, Wyoming on a free port, a temporary store); the engine baseline is
the same engine and settings loaded in this process, decoding the whole clip as one window (beam 5, language
given). The two never run at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import benchlib
import numpy as np
from benchlib import clean_env, clip, free_port, port_open, quiet_wav, wait_ready


async def wyoming_once(port: int, pcm: bytes, language: str) -> tuple[float, str]:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    async with AsyncTcpClient("127.0.0.1", port, read_timeout=300) as c:
        await c.write_event(Transcribe(language=language).event())
        await c.write_event(AudioStart(16000, 2, 1).event())
        for i in range(0, len(pcm), 2048):
            await c.write_event(AudioChunk(16000, 2, 1, pcm[i : i + 2048]).event())
        t0 = time.perf_counter()
        await c.write_event(AudioStop().event())
        while True:
            e = await c.read_event()
            assert e is not None
            if Transcript.is_type(e.type):
                return time.perf_counter() - t0, Transcript.from_event(e).text


def start_daemon(port: int, store: Path) -> subprocess.Popen[bytes]:
    env = clean_env(
        ASRBOX_STORE__PATH=str(store),
        ASRBOX_SESSION__LISTEN_ON_START="false",
        ASRBOX_WYOMING__ENABLED="true",
        ASRBOX_WYOMING__PORT=str(port),
        ASRBOX_MQTT__PORT=str(free_port()),  # no broker: the daemon keeps trying, Wyoming does not need it
    )
    silence = quiet_wav(store.parent / "silence.wav")
    proc = benchlib.start_daemon(env, None, "--source", str(silence))
    wait_ready(proc, lambda: port_open(port), "the Wyoming port", timeout=300)
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="en_hifitts6097_glitteringplain_11_morris_0037")  # 5.04 s
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    from daemon.asr.engine import load_engine
    from daemon.settings import AsrSettings
    from daemon.transcript import DecodeOptions

    wav, row = clip(args.clip)
    lang = row["lang"]
    with wave.open(str(wav)) as w:
        pcm = w.readframes(w.getnframes())
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
    engine = load_engine(AsrSettings())
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_daemon(port, Path(tmp) / "store")
        try:
            asyncio.run(wyoming_once(port, pcm, lang))  # warm-up (first request loads VAD, ITN)
            engine.transcribe([audio], DecodeOptions(language=lang))
            lat, dec = [], []
            for _ in range(args.runs):
                t, text = asyncio.run(wyoming_once(port, pcm, lang))
                lat.append(t)
                t0 = time.perf_counter()
                engine.transcribe([audio], DecodeOptions(language=lang))
                dec.append(time.perf_counter() - t0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    m_lat, m_dec = statistics.median(lat), statistics.median(dec)
    print(f"clip {args.clip} ({audio.size / 16000:.2f} s), {args.runs} runs, {os.cpu_count()} CPUs")
    print(f"wyoming request (audio-stop -> transcript): median {m_lat:.3f} s  {sorted(round(x, 3) for x in lat)}")
    print(f"engine decode of the clip (baseline):       median {m_dec:.3f} s  {sorted(round(x, 3) for x in dec)}")
    print(f"ratio {m_lat / m_dec:.2f}; text: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
