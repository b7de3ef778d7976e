"""The Wyoming server, driven by the `wyoming` library's own client against the daemon as a subprocess, on real
speech: the transcript is what `asrbox transcribe` gives for the same clip; describe/info; bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, Broker, asrbox, eval_clip, free_port
from textmetrics import error_rate
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong

pytestmark = [pytest.mark.model, pytest.mark.broker]

CLIPS = {"en": "en_rhasspy_turn_on_the_living_room_lamp", "zh": "zh_aishell1_BAC009S0764W0121"}
SAMPLES_PER_CHUNK = 1024  # what Home Assistant sends
READ_S = 120.0
DEVICE = f"wyobox-{os.getpid()}"  # the zeroconf name must be unique on the LAN (parallel test runs)


@dataclass
class Daemon:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    store: Path
    env: dict[str, str]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Reply:
    events: list[Event] = field(default_factory=list)
    before_stop: int = 0  # events that arrived before audio-stop was sent

    def of(self, kind: Any) -> list[Event]:
        return [e for e in self.events if kind.is_type(e.type)]

    @property
    def text(self) -> str:
        (t,) = self.of(Transcript)
        return str(Transcript.from_event(t).text)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("wyoming")
    broker = Broker(tmp)
    broker.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    env.update(
        ASRBOX_STORE__PATH=str(tmp / "store"),
        ASRBOX_ASR__CACHE_DIR=str(cache_dir),
        ASRBOX_MQTT__HOST="127.0.0.1",
        ASRBOX_MQTT__PORT=str(broker.port),
        ASRBOX_MQTT__DEVICE_ID=DEVICE,
        ASRBOX_SESSION__LISTEN_ON_START="false",  # the engine serves Wyoming only
        ASRBOX_WYOMING__ENABLED="true",
        ASRBOX_WYOMING__BIND="0.0.0.0",
        ASRBOX_WYOMING__PORT=str(port),
        ASRBOX_WYOMING__ZEROCONF="true",
        PYTHONUNBUFFERED="1",
    )
    log = tmp / "daemon.log"
    source, _ = eval_clip(CLIPS["en"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--source", str(source)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    d = Daemon(port, proc, log, tmp / "store", env)
    try:
        _wait_served(d)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()


def _wait_served(d: Daemon) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert d.alive(), d.log_tail()
        try:
            socket.create_connection(("127.0.0.1", d.port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail("the Wyoming port was not served: " + d.log_tail())


@pytest.fixture(scope="module")
def cli_texts(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict[str, str]:
    """`asrbox transcribe` of each clip (its own process, no store): what Wyoming must answer."""
    tmp = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    env.update(ASRBOX_STORE__PATH=str(tmp / "store"), ASRBOX_ASR__CACHE_DIR=str(cache_dir))
    texts = {}
    for lang, clip in CLIPS.items():
        wav, _ = eval_clip(clip)
        r = asrbox("transcribe", str(wav), "--format", "json", "--no-store", "--language", lang, env=env)
        assert r.returncode == 0, r.stderr
        texts[lang] = json.loads(r.stdout)["text"]
    return texts


def pcm_of(clip: str) -> tuple[bytes, int, int, int]:
    wav, _ = eval_clip(clip)
    with wave.open(str(wav), "rb") as w:
        return w.readframes(w.getnframes()), w.getframerate(), w.getsampwidth(), w.getnchannels()


async def request(
    port: int,
    pcm: bytes,
    rate: int,
    width: int,
    channels: int,
    language: str | None,
    realtime: float = 0.0,
) -> Reply:
    """One voice command as Home Assistant sends it; `realtime` > 0 paces the chunks (1.0 = real speed)."""
    reply = Reply()
    async with AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=READ_S) as client:
        reader = asyncio.create_task(_read_until_stop(client, reply))
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = SAMPLES_PER_CHUNK * width * channels
        for i in range(0, len(pcm), step):
            await client.write_event(AudioChunk(rate, width, channels, pcm[i : i + step]).event())
            if realtime:
                await asyncio.sleep(SAMPLES_PER_CHUNK / rate / realtime)
        reply.before_stop = len(reply.events)
        await client.write_event(AudioStop().event())
        await reader
    return reply


async def _read_until_stop(client: AsyncTcpClient, reply: Reply) -> None:
    while True:
        event = await client.read_event()
        assert event is not None, "the server closed the connection before transcript-stop"
        reply.events.append(event)
        if TranscriptStop.is_type(event.type) or Error.is_type(event.type):
            return


async def exchange(port: int, raw: bytes, then: list[Event], read: bool = True) -> list[Event]:
    """Send raw bytes (and then events); the events the server sends until it closes or ends an answer. The server
    may hang up while we still write (that is the point of some cases): what it sent first is still read."""
    out: list[Event] = []
    client = AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=READ_S)
    await client.connect()
    assert client._writer is not None
    with contextlib.suppress(ConnectionError):
        client._writer.write(raw)
        for e in then:
            await client.write_event(e)
    with contextlib.suppress(ConnectionError):
        while read and (event := await client.read_event()) is not None:
            out.append(event)
            if event.type in ("transcript-stop", "error", "info"):
                break
    with contextlib.suppress(ConnectionError):
        await client.disconnect()
    return out


def describe(port: int) -> Info:
    async def go() -> Info:
        async with AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=10) as client:
            await client.write_event(Describe().event())
            event = await client.read_event()
            assert event is not None and Info.is_type(event.type)
            return Info.from_event(event)

    return asyncio.run(go())


def wyoming_records(d: Daemon) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(d.store / "asrbox.db")
    try:
        return db.execute("SELECT kind, status, text FROM records WHERE source='wyoming' ORDER BY rowid").fetchall()
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------------------------


def test_describe_lists_the_model_and_languages(daemon: Daemon) -> None:
    info = describe(daemon.port)
    (program,) = info.asr
    assert program.name == "asrbox" and program.installed and program.supports_transcript_streaming
    (model,) = program.models
    assert model.name == "whisper-base-int8" and {"en", "zh", "de"} <= set(model.languages)


def test_zeroconf_announces_the_service(daemon: Daemon) -> None:
    from zeroconf import IPVersion, Zeroconf

    from daemon.wyoming.announce import lan_address

    host = lan_address("0.0.0.0")
    if host is None:
        pytest.skip("no non-loopback IPv4 interface to announce on")
    deadline = time.monotonic() + 30
    while "wyoming: announced as" not in daemon.log.read_text() and time.monotonic() < deadline:
        assert daemon.alive(), daemon.log_tail()
        time.sleep(0.1)
    zc = Zeroconf(ip_version=IPVersion.V4Only, interfaces=[host])
    try:
        info = zc.get_service_info("_wyoming._tcp.local.", f"asrbox-{DEVICE}._wyoming._tcp.local.", timeout=5000)
    finally:
        zc.close()
    assert info is not None, daemon.log_tail()
    assert info.port == daemon.port and info.parsed_addresses() == [host]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_transcript_matches_cli_and_is_recorded(daemon: Daemon, cli_texts: dict[str, str], lang: str) -> None:
    before = len(wyoming_records(daemon))
    pcm, rate, width, channels = pcm_of(CLIPS[lang])
    reply = asyncio.run(request(daemon.port, pcm, rate, width, channels, lang))
    assert reply.text == cli_texts[lang], daemon.log_tail()
    kinds = [e.type for e in reply.events]
    assert kinds[0] == "transcript-start" and kinds[-2:] == ["transcript", "transcript-stop"], kinds
    assert Transcript.from_event(reply.of(Transcript)[0]).language == lang
    records = wyoming_records(daemon)
    assert records[before:] == [("file", "done", cli_texts[lang])]


def test_other_rates_widths_channels_are_converted(daemon: Daemon, cli_texts: dict[str, str]) -> None:
    import av

    pcm, rate, _, _ = pcm_of(CLIPS["en"])
    resampler = av.AudioResampler(format="s32", layout="stereo", rate=44_100)
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    out = [f.to_ndarray() for f in (*resampler.resample(frame), *resampler.resample(None))]
    stereo32 = np.concatenate(out, axis=1).astype("<i4").tobytes()
    reply = asyncio.run(request(daemon.port, stereo32, 44_100, 4, 2, "en"))
    assert error_rate(cli_texts["en"], reply.text, "en") == 0.0, reply.text
    # 8-bit unsigned mono at 8 kHz (telephone quality): still the command
    x = np.frombuffer(pcm, "<i2")[::2].astype(np.int32)
    u8 = ((x >> 8) + 128).astype(np.uint8).tobytes()
    reply = asyncio.run(request(daemon.port, u8, 8_000, 1, 1, "en"))
    assert error_rate(cli_texts["en"], reply.text, "en") <= 0.2, reply.text


def test_streaming_chunks_before_the_end_join_into_the_transcript(daemon: Daemon) -> None:
    pcm, rate, width, channels = pcm_of("en_jfk")  # 11 s, at real speed
    reply = asyncio.run(request(daemon.port, pcm, rate, width, channels, "en", realtime=1.0))
    chunks = [TranscriptChunk.from_event(e).text for e in reply.of(TranscriptChunk)]
    early = [e for e in reply.events[: reply.before_stop] if TranscriptChunk.is_type(e.type)]
    assert early, f"no transcript-chunk while the audio was still coming: {[e.type for e in reply.events]}"
    assert TranscriptStart.is_type(reply.events[0].type) and all(chunks)
    # the chunks are what two drafts agreed on, completed by the final: the same words (drafts lack punctuation)
    assert error_rate(reply.text, "".join(chunks), "en") == 0.0, (chunks, reply.text)
    assert len(reply.text.split()) == len("".join(chunks).split())


def test_bad_input_is_answered_and_the_daemon_serves_on(daemon: Daemon) -> None:
    def run(raw: bytes, then: tuple[Event, ...] | list[Event] = (), read: bool = True) -> list[Event]:
        return asyncio.run(exchange(daemon.port, raw, list(then), read))

    def error_code(events: list[Event]) -> str | None:
        errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
        return errors[0].code if errors else None

    assert error_code(run(b"this is not json\n")) == "bad_event"
    assert error_code(run(b'{"type": "audio-chunk", "payload_length": 1000000000}\n')) == "too_large"
    assert error_code(run(b"x" * 200_000)) == "too_large"  # a header line without an end
    big = AudioChunk(16000, 2, 1, b"\0" * (2 * 1024 * 1024)).event()
    assert error_code(run(b"", [AudioStart(16000, 2, 1).event(), big])) == "too_large"
    assert error_code(run(b"", [AudioStart(0, 2, 1).event()])) == "bad_audio"
    assert error_code(run(b"", [AudioStart(16000, 7, 1).event()])) == "bad_audio"
    changed = [AudioStart(16000, 2, 1).event(), AudioChunk(22050, 2, 1, b"\0\0" * 100).event()]
    assert error_code(run(b"", changed)) == "bad_audio"
    # unknown events are ignored; the connection goes on
    events = run(b"", [Event(type="no-such-event", data={"x": 1}), Describe().event()])
    assert [e.type for e in events] == ["info"]
    # audio-stop with no audio: an empty transcript, no engine call, no record
    before = len(wyoming_records(daemon))
    events = run(b"", [Transcribe(language="en").event(), AudioStop().event()])
    assert [e.type for e in events] == ["transcript-start", "transcript", "transcript-stop"]
    assert Transcript.from_event(events[1]).text == ""
    # audio without transcribe or audio-start: the chunk's own format is used
    pcm, rate, width, channels = pcm_of(CLIPS["en"])
    step = SAMPLES_PER_CHUNK * 2
    chunks = [AudioChunk(rate, width, channels, pcm[i : i + step]).event() for i in range(0, len(pcm), step)]
    events = run(b"", [*chunks, AudioStop().event()])
    assert "living room" in Transcript.from_event(next(e for e in events if e.type == "transcript")).text.lower()
    # a client that leaves mid-stream leaves nothing behind
    run(b"", [AudioStart(16000, 2, 1).event(), *chunks[:20]], read=False)
    assert daemon.alive(), daemon.log_tail()
    assert describe(daemon.port).asr[0].name == "asrbox"
    assert len(wyoming_records(daemon)) == before + 1  # only the complete request


def test_port_in_use_is_a_config_error(env: dict[str, str], tmp_path: Path, daemon: Daemon) -> None:
    r = asrbox(
        "run",
        "--source",
        str(eval_clip(CLIPS["en"])[0]),
        env={**env, "ASRBOX_WYOMING__ENABLED": "true", "ASRBOX_WYOMING__PORT": str(daemon.port)},
        timeout=120,
    )
    assert r.returncode == 78, r.stderr[-2000:]
    assert "wyoming: cannot listen on" in r.stderr and "Traceback" not in r.stderr


def test_sigterm_with_a_client_connected_stops_in_order(daemon: Daemon) -> None:
    async def hold_open() -> bool:
        async with AsyncTcpClient("127.0.0.1", daemon.port, connect_timeout=5, read_timeout=30) as client:
            await client.write_event(AudioStart(16000, 2, 1).event())
            await client.write_event(Ping(text="barrier").event())  # answered once AudioStart is handled
            pong = await client.read_event()
            assert pong is not None and Pong.is_type(pong.type)
            daemon.proc.send_signal(signal.SIGTERM)
            return await client.read_event() is None  # closed by the daemon

    assert asyncio.run(hold_open())
    assert daemon.proc.wait(60) == 0, daemon.log_tail()
    assert "asrbox stopped" in daemon.log.read_text()


def test_pcm_widths_and_channels_to_16k_mono() -> None:
    from daemon.wyoming.pcm import PcmConverter

    x = (np.sin(np.arange(1600) / 5) * 20000).astype(np.int16)  # 0.1 s at 16 kHz
    s24 = (x.astype(np.int32) << 8).astype("<i4")
    as24 = np.stack([s24 & 0xFF, (s24 >> 8) & 0xFF, (s24 >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    conv = PcmConverter(16000, 3, 1)
    got = np.concatenate([conv.convert(as24[:1001]), conv.convert(as24[1001:])])  # a frame split across chunks
    assert np.array_equal(got, x)
    stereo = np.stack([x, x], axis=1).astype("<i2").tobytes()
    assert np.array_equal(PcmConverter(16000, 2, 2).convert(stereo), x)
    up = PcmConverter(48000, 2, 1)
    out = np.concatenate([up.convert(np.repeat(x, 3).astype("<i2").tobytes()), up.flush()])
    assert abs(out.size - x.size) <= 32 and np.corrcoef(out[100:1500], x[100:1500])[0, 1] > 0.99


def test_chunks_of_a_chinese_request_continue_into_its_final() -> None:
    from daemon.wyoming.stream import Agreement

    a = Agreement(None)  # the language comes with the first draft
    sent = [a.update(h, "zh") for h in ("甚至出现", "甚至出现交易", "甚至出现交易几乎")]
    assert sent == ["", "甚至出现", "交易"]
    final = "甚至，出现交易几乎停滞的情况。"
    assert a.rest(final) == "几乎停滞的情况。"
    b = Agreement("en")
    assert [b.update(h, "en") for h in ("turn on", "turn on the")] == ["", "turn on"]
    assert b.rest("Turn off the lamp.") == ""  # a word already sent changed: no more chunks
