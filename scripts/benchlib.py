"""What the benchmark scripts share: the tree and the eval clips, a free port, a clean environment, a quiet WAV,
the daemon as a subprocess and waiting until it serves, a private Mosquitto and a subscriber, RSS, percentiles
and summaries, JSON output. Imported by the scripts next to it (`import benchlib`: a script's folder is on
sys.path when it runs)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = Path(os.environ.get("ASRBOX_EVAL_DIR", ROOT.parent / "shared" / "eval"))
RATE = 16000


def eval_rows(
    manifest: Path = EVAL / "manifest.jsonl", langs: set[str] | None = None, max_s: float | None = None
) -> list[dict[str, Any]]:
    """The rows of an eval manifest (paths are relative to its folder), in its order: only `langs` and clips
    shorter than `max_s` seconds when given."""
    lines = manifest.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [
        r for r in rows if (langs is None or r["lang"] in langs) and (max_s is None or float(r["duration_s"]) < max_s)
    ]


def clip(clip_id: str, eval_dir: Path = EVAL) -> tuple[Path, dict[str, Any]]:
    """An eval clip's path and manifest row; a one-line exit when it is not there."""
    for row in eval_rows(eval_dir / "manifest.jsonl"):
        if row["id"] == clip_id:
            return eval_dir / row["path"], row
    raise SystemExit(f"{Path(sys.argv[0]).name}: clip {clip_id} not in {eval_dir}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(keep_cache: bool = False, **extra: str) -> dict[str, str]:
    """This process's environment without any ASRBOX_ setting (but ASRBOX_ASR__CACHE_DIR, where the model is,
    with `keep_cache`), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBOX_")}
    if keep_cache and "ASRBOX_ASR__CACHE_DIR" in os.environ:
        env["ASRBOX_ASR__CACHE_DIR"] = os.environ["ASRBOX_ASR__CACHE_DIR"]
    env.update(extra)
    return env


def quiet_wav(path: Path, seconds: float = 1.0, noise: float = 0.0, seed: int = 1) -> Path:
    """16 kHz mono 16-bit: silence, or uniform noise of +-`noise` (int16 units) from `seed`."""
    n = int(RATE * seconds)
    samples = np.random.default_rng(seed).uniform(-noise, noise, n) if noise else np.zeros(n)
    pcm = samples.astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return path


def start_daemon(env: dict[str, str], log: Path | None, *args: str, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """`python -m daemon run ARGS` of the tree at `cwd`, its stderr in `log` (None: discarded)."""
    err = log.open("wb") if log is not None else subprocess.DEVNULL
    cmd = [sys.executable, "-m", "daemon", "run", *args]
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)


def wait_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log: Path | None = None, timeout: float = 300
) -> None:
    """Until `ready()` is true (OSError counts as not yet); a one-line exit if the daemon ends or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log is not None and log.is_file() else ""
            raise SystemExit(f"the daemon ended (exit {proc.returncode}) before {what}: {tail}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"no {what} in {timeout:g} s")


def http_ok(url: str) -> bool:
    """GET `url` answers 200 (errors raise OSError)."""
    with urllib.request.urlopen(url, timeout=2) as r:
        return int(r.status) == 200


def port_open(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:`port` (if not, OSError)."""
    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    return True


class Broker:
    """A private Mosquitto on a free loopback port, its config in `work`."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        conf = work / "m.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        self.proc = subprocess.Popen(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def subscribe(port: int, topic: str, on_message: Callable[[Any, Any, Any], None]) -> Any:
    """A paho client on 127.0.0.1:`port`, subscribed (QoS 1) to `topic` with its network loop running."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    ready = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, m, r, p: ready.set()
    client.on_message = on_message
    for _ in range(100):  # the broker may still be starting
        try:
            client.connect("127.0.0.1", port)
            break
        except OSError:
            time.sleep(0.05)
    client.loop_start()
    if not ready.wait(10):
        client.loop_stop()
        raise SystemExit(f"could not subscribe to {topic} on port {port}")
    return client


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of process `pid` in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank; NaN when there are none."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary_ms(samples: list[float]) -> dict[str, float]:
    """Median, p95 and max of millisecond timings (0.1 ms), with their count."""
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(pct(samples, 0.95), 1),
        "max_ms": round(max(samples), 1),
        "n": len(samples),
    }


def emit_json(result: dict[str, Any], path: Path | None, echo: bool = True) -> None:
    """Print the result as JSON (when `echo`) and write it to `path` when given."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if echo:
        print(text)
    if path is not None:
        path.write_text(text + "\n", encoding="utf-8")
