"""`asrbox doctor`: what a support call checks, one line each (ok / warn / FAIL); exit 1 when something FAILs.

Every check runs on its own daemon thread with a deadline, so a hung device or an unanswered connection costs a
FAIL line, never a hang. Nothing here writes (the model is re-hashed, not assembled; the store is read only), and
it works beside a running daemon: the broker check uses its own client id, a served port is asked who it is.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.errors import AsrboxError
from daemon.mqtt.client import apply_credentials
from daemon.settings import Settings

LEVEL_S = 1.0  # microphone audio read for the level
PORT_S = 2.0
QUIET_DBFS = -70.0
# beyond the timeout: a re-hash on an SD card, importing torch, TCP connect + CONNACK wait (each up to the timeout)
LIMITS_S = {"model": 110.0, "engine": 20.0, "broker": 10.0}


@dataclass(frozen=True)
class Check:
    status: str  # "ok", "warn" or "FAIL"
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<10}  {self.detail}"


def ok(name: str, detail: str) -> Check:
    return Check("ok", name, detail)


def warn(name: str, detail: str) -> Check:
    return Check("warn", name, detail)


def fail(name: str, detail: str) -> Check:
    return Check("FAIL", name, detail)


# ---------------------------------------------------------------------------------------------------- microphone
def check_microphone(s: Settings) -> Check:
    from daemon.audio.source import MicrophoneSource, list_input_devices, pick_device

    if s.audio.source:
        src = Path(s.audio.source)
        if not src.is_file():
            return fail("microphone", f"audio.source: no such file: {src}")
        return ok("microphone", f"audio.source plays a file: {src}")
    try:
        device = pick_device(list_input_devices(), s.audio.device)
    except AsrboxError as exc:
        return fail("microphone", str(exc))
    mic = MicrophoneSource(s.audio.device)
    try:
        mic.open()
        blocks = _read(mic)
    except AsrboxError as exc:
        return warn("microphone", f"{device.name}: cannot read it ({exc}); a running daemon may hold it")
    finally:
        mic.close()
    return _level(device.name, blocks)


def _read(mic: Any) -> list[Any]:
    out, heard = [], 0.0
    while heard < LEVEL_S:
        block = mic.read()
        if block is None:
            break
        out.append(block.pcm)
        heard += block.pcm.size / 16_000
    return out


def _level(name: str, blocks: list[Any]) -> Check:
    import numpy as np

    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if audio.size == 0:
        return fail("microphone", f"{name}: delivered no audio")
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        return fail("microphone", f"{name}: delivers only silence (digital zero: muted or unplugged?)")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    level = f"{name}: level {20 * math.log10(max(rms, 1e-10)):.0f} dBFS, peak {20 * math.log10(peak):.0f} dBFS"
    if 20 * math.log10(max(rms, 1e-10)) < QUIET_DBFS:
        return warn("microphone", level + " (very quiet: gain too low?)")
    return ok("microphone", level)


# ---------------------------------------------------------------------------------------------------- model, engine
def check_model(s: Settings) -> Check:
    from daemon.asr.models import embedded_model_dir, prepare_embedded_model, resolve_whisper_model
    from daemon.asr.provisioned import problems, resolve

    asr = s.asr
    try:
        if asr.engine == "whisper" and not asr.model:
            if not embedded_model_dir(asr.cache_dir).is_dir():
                return fail("model", f"embedded model not assembled in {asr.cache_dir} (asrbox models prepare)")
            path = prepare_embedded_model(asr.cache_dir, verify=True)
            return ok("model", f"embedded Whisper base, sha256 verified ({path})")
        if asr.engine == "whisper":
            return ok("model", f"Whisper model folder {resolve_whisper_model(asr.model, asr.cache_dir).path}")
        folder = Path(resolve(asr.model, asr.models_dir))
        found = problems(folder)
        return fail("model", f"{folder}: {'; '.join(found)}") if found else ok("model", f"{folder}: hashes ok")
    except AsrboxError as exc:
        return fail("model", str(exc))


def check_engine(s: Settings) -> Check:
    asr = s.asr
    count, why = _cuda_devices(asr.engine)
    if count:
        where = "cuda" if asr.device != "cpu" else "cpu (asr.device = cpu although CUDA is there)"
        return ok("engine", f"{asr.engine} on {where}: {count} CUDA device(s)")
    if asr.device == "cuda":
        return fail("engine", f"asr.device = cuda but no CUDA device: {why}")
    return ok("engine", f"{asr.engine} on cpu (no CUDA: {why})")


def _cuda_devices(engine: str) -> tuple[int, str]:
    """(CUDA devices the engine's runtime sees, why none)."""
    if not Path("/proc/driver/nvidia/version").exists() and not shutil.which("nvidia-smi"):
        return 0, "no NVIDIA driver loaded"
    try:
        if engine == "whisper":
            import ctranslate2

            n = int(ctranslate2.get_cuda_device_count())
        elif engine == "onnx":
            import onnxruntime

            n = int("CUDAExecutionProvider" in onnxruntime.get_available_providers())
        else:
            import torch

            n = int(torch.cuda.device_count())
    except Exception as exc:
        return 0, f"the runtime cannot use it ({type(exc).__name__}: {exc})"
    return n, "the driver is loaded but the runtime sees no device (CPU-only build?)"


# ---------------------------------------------------------------------------------------------------- broker
def check_broker(s: Settings, timeout: float) -> Check:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    m = s.mqtt
    try:
        m.check_files()
    except AsrboxError as exc:
        return fail("broker", str(exc))
    v5 = m.protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"asrbox-doctor-{m.device_id}-{os.getpid()}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    tls = apply_credentials(client, m)
    return _connack(client, f"{m.host}:{m.port}" + (" (TLS)" if tls else ""), m, timeout)


def _connack(client: Any, where: str, m: Any, timeout: float) -> Check:
    answered = threading.Event()
    result: list[Any] = []

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        result.append(reason)
        answered.set()

    client.on_connect = on_connect
    client.connect_timeout = timeout
    try:
        client.connect(m.host, m.port, keepalive=max(5, int(timeout)))
    except (OSError, ValueError) as exc:
        return fail("broker", f"{where}: cannot connect: {getattr(exc, 'strerror', None) or exc}")
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return fail("broker", f"{where}: connected but no CONNACK within {timeout:.0f} s")
        reason = result[0]
        if getattr(reason, "is_failure", False):
            return fail("broker", f"{where}: refused: {reason}")
        who = f" as {m.username!r}" if m.username else " (anonymous)"
        return ok("broker", f"{where}: connected{who}")
    finally:
        client.disconnect()
        client.loop_stop()


# ---------------------------------------------------------------------------------------------------- disk, clock
def check_disk(s: Settings) -> Check:
    st = s.store
    where = st.path if st.path.exists() else next(p for p in st.path.resolve().parents if p.exists())
    free_mb = shutil.disk_usage(where).free / 1e6
    audio_gb = _size(st.path / "audio") / 1e9
    keep = f"retention {st.retention_days} days" if st.retention_days else "audio kept forever"
    quota = f", quota {st.max_audio_gb:g} GB" if st.max_audio_gb else ""
    detail = f"{free_mb / 1e3:.1f} GB free at {where}; audio {audio_gb:.2f} GB; {keep}{quota}"
    if free_mb < st.min_free_mb:
        return fail("disk", f"{detail}: below store.min_free_mb {st.min_free_mb} (utterance audio is not archived)")
    if st.max_audio_gb and audio_gb > st.max_audio_gb * 1.1:
        return warn("disk", f"{detail}: audio over its quota (retention behind?)")
    if free_mb < 2 * st.min_free_mb:
        return warn("disk", f"{detail}: close to store.min_free_mb {st.min_free_mb}")
    if not st.retention_days and not st.max_audio_gb:
        return warn("disk", f"{detail}: no retention and no quota: the disk fills up eventually")
    return ok("disk", detail)


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):  # removed meanwhile (retention)
                total += os.stat(os.path.join(root, f)).st_size
    return total


def check_clock(s: Settings) -> Check:
    now = datetime.now(UTC)
    if now.year < 2025:
        return fail("clock", f"the clock says {now:%Y-%m-%d}: not set (timestamps of every record are wrong)")
    newest = _newest_record(s.store.path / "asrbox.db")
    if newest is not None and newest > now.timestamp() + 60:
        ahead = newest - now.timestamp()
        return fail("clock", f"the newest record is {ahead:.0f} s in the future: the clock went back")
    synced = _ntp_synchronized()
    detail = f"{now:%Y-%m-%d %H:%M:%S} UTC"
    if synced is False:
        return warn("clock", f"{detail}, not synchronised (NTP): timestamps may drift")
    return ok("clock", detail + (", synchronised (NTP)" if synced else ""))


def _newest_record(db: Path) -> float | None:
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        try:
            row = con.execute("SELECT MAX(created_at) FROM records").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    if not row or not row[0]:
        return None
    try:
        return datetime.fromisoformat(str(row[0]).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ntp_synchronized() -> bool | None:
    exe = shutil.which("timedatectl")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = r.stdout.strip()
    return {"yes": True, "no": False}.get(value) if r.returncode == 0 else None


# ---------------------------------------------------------------------------------------------------- ports
def check_port(name: str, enabled: bool, bind: str, port: int, ask: Callable[[socket.socket], str]) -> Check:
    if not enabled:
        return ok(name, "off")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind, bind)
    try:
        sock = socket.create_connection((host, port), timeout=PORT_S)
    except OSError:
        return _free(name, bind, port)
    with sock:
        sock.settimeout(PORT_S)
        try:
            who = ask(sock)
        except (OSError, ValueError) as exc:
            return fail(name, f"{host}:{port} is taken by something else (it does not answer as asrbox: {exc})")
    return ok(name, f"{host}:{port} served: {who}")


def _free(name: str, bind: str, port: int) -> Check:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except OSError as exc:
            return fail(name, f"{bind}:{port} cannot be had: {exc.strerror}")
    return ok(name, f"{bind}:{port} free (the daemon is not running)")


def ask_wyoming(sock: socket.socket) -> str:
    sock.sendall(b'{"type": "describe"}\n')
    reader = sock.makefile("rb")
    header = json.loads(reader.readline(65536))
    if header.get("type") != "info":
        raise ValueError(f"answered {header.get('type')!r} to describe")
    data = header.get("data") or {}
    if header.get("data_length"):
        data.update(json.loads(reader.read(int(header["data_length"]))))
    program = (data.get("asr") or [{}])[0]
    models = [m.get("name") for m in program.get("models", [])]
    return f"Wyoming {program.get('name')} ({', '.join(str(m) for m in models)})"


def ask_http(sock: socket.socket) -> str:
    sock.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
    head = sock.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
    if not head.startswith("HTTP/"):
        raise ValueError("not HTTP (or HTTPS: the TLS handshake comes first)")
    return f"HTTP ({head})"


# ---------------------------------------------------------------------------------------------------- running
def checks(s: Settings, timeout: float) -> list[tuple[str, Callable[[], Check]]]:
    return [
        ("microphone", lambda: check_microphone(s)),
        ("model", lambda: check_model(s)),
        ("engine", lambda: check_engine(s)),
        ("broker", lambda: check_broker(s, timeout)),
        ("disk", lambda: check_disk(s)),
        ("clock", lambda: check_clock(s)),
        ("http", lambda: check_port("http", s.http.enabled, s.http.bind, s.http.port, ask_http)),
        ("wyoming", lambda: check_port("wyoming", s.wyoming.enabled, s.wyoming.bind, s.wyoming.port, ask_wyoming)),
    ]


def run_checks(s: Settings, timeout: float = 10.0) -> list[Check]:
    """All checks at once, each on a daemon thread; a check past the deadline is a FAIL (and is left behind)."""
    todo = checks(s, timeout)
    results: dict[str, Check] = {}
    began = time.monotonic()
    threads = []
    for name, fn in todo:
        t = threading.Thread(target=_guarded, args=(name, fn, results), name=f"doctor-{name}", daemon=True)
        t.start()
        threads.append((t, began + timeout + LIMITS_S.get(name, 0.0)))
    for t, deadline in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [results.get(name) or fail(name, "no answer in time (hung?)") for name, _ in todo]


def _guarded(name: str, fn: Callable[[], Check], results: dict[str, Check]) -> None:
    try:
        results[name] = fn()
    except Exception as exc:  # a check that breaks is itself a finding
        results[name] = fail(name, f"{type(exc).__name__}: {exc}")


def doctor(s: Settings, timeout: float) -> int:
    found = run_checks(s, timeout)
    for c in found:
        print(c.line(), flush=True)
    return 1 if any(c.status == "FAIL" for c in found) else 0
