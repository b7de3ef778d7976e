"""Fleet benchmark: N small boxes (asrbox daemons with `asr.engine = "remote"`, each playing a recording as its
microphone at real speed) share one recognition server (an asrbox daemon with [http] on, the embedded Whisper
base) and one Mosquitto, all on this machine. Measured in the same run, as the baseline: one box with the local
engine on the same recording, alone.

Reports per box: finals, exactly-once delivery (seq 1..n each once, one final per stored row, every row done, no
attempt beyond the first), latency from end of speech to the final handed to the broker (the payload's
`latency_ms`, as scripts/bench_live.py measures it) p50 / p95 / max, and peak RSS of the box.

    .venv/bin/python scripts/bench_fleet.py [--boxes 8] [--seconds 40] [--partials] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

from benchlib import (
    EVAL,
    Broker,
    clean_env,
    emit_json,
    free_port,
    http_ok,
    pct,
    quiet_wav,
    rss_mb,
    start_daemon,
    subscribe,
    wait_ready,
)

DEFAULT_WAV = EVAL / "en" / "en_long_concat_hifitts6097.wav"


def head_of(wav: Path, seconds: float, dest: Path) -> Path:
    with wave.open(str(wav), "rb") as r, wave.open(str(dest), "wb") as w:
        w.setparams(r.getparams())
        w.writeframes(r.readframes(int(r.getframerate() * seconds)))
    return dest


class Subscriber:
    """Every final under asrbox/+/transcript/final, with its box."""

    def __init__(self, port: int) -> None:
        self.finals: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.client = subscribe(port, "asrbox/+/transcript/final", self._message)

    def _message(self, c: Any, u: Any, m: Any) -> None:
        box = m.topic.split("/")[1]
        with self._lock:
            self.finals.setdefault(box, []).append(json.loads(m.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def base_env(work: Path, name: str, broker_port: int, **extra: str) -> dict[str, str]:
    return clean_env(
        ASRBOX_STORE__PATH=str(work / name),
        ASRBOX_MQTT__HOST="127.0.0.1",
        ASRBOX_MQTT__PORT=str(broker_port),
        ASRBOX_MQTT__DEVICE_ID=name,
        PYTHONUNBUFFERED="1",
        **extra,
    )


def start_server(work: Path, broker_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = base_env(work, "server", broker_port, ASRBOX_HTTP__ENABLED="true", ASRBOX_HTTP__PORT=str(port))
    quiet = quiet_wav(work / "quiet.wav")
    log = work / "server.log"
    proc = start_daemon(env, log, "--source", str(quiet), "--loops", "1000000")
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, lambda: http_ok(url + "/health"), "a healthy server", log, timeout=300)
    return proc, url


def run_boxes(
    work: Path, wav: Path, names: list[str], broker_port: int, sub: Subscriber, extra: dict[str, str]
) -> dict[str, dict[str, Any]]:
    procs = {}
    for i, name in enumerate(names):
        env = base_env(work, name, broker_port, **extra)
        procs[name] = start_daemon(env, work / f"{name}.log", "--source", str(wav), "--exit-at-end")
        if i + 1 < len(names):
            time.sleep(0.5)  # staggered: the same recording, not the same instant
    peak = dict.fromkeys(names, 0.0)
    while any(p.poll() is None for p in procs.values()):
        for name, p in procs.items():
            peak[name] = max(peak[name], rss_mb(p.pid))
        time.sleep(0.2)
    time.sleep(1.0)  # the last QoS 1 deliveries
    return {
        name: box_result(work / name, sub.finals.get(name, []), procs[name].returncode, peak[name]) for name in names
    }


def box_result(store: Path, finals: list[dict[str, Any]], rc: int, peak: float) -> dict[str, Any]:
    with sqlite3.connect(store / "asrbox.db") as db:
        rows = db.execute("SELECT id, status, attempts FROM records WHERE kind='live' ORDER BY rowid").fetchall()
    seqs = [int(f["seq"]) for f in finals]
    ids = [f["id"] for f in finals]
    lat = [float(f["latency_ms"]) for f in finals if f.get("latency_ms") is not None]
    return {
        "rc": rc,
        "finals": len(finals),
        "rows": len(rows),
        "exactly_once": seqs == list(range(1, len(rows) + 1)) and ids == [r[0] for r in rows],
        "all_done": all(r[1] == "done" for r in rows),
        "max_attempts_used": max((int(r[2]) for r in rows), default=0),
        "latency_ms": lat,
        "p50": pct(lat, 0.5),
        "p95": pct(lat, 0.95),
        "max": max(lat) if lat else float("nan"),
        "peak_rss_mb": round(peak, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=8)
    ap.add_argument("--wav", type=Path, default=DEFAULT_WAV)
    ap.add_argument("--seconds", type=float, default=40.0, help="play the first N seconds of --wav")
    ap.add_argument("--partials", action="store_true", help="boxes send drafts for partials too (default: finals)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asrbox-fleet-"))
    wav = head_of(args.wav, args.seconds, work / "speech.wav")
    broker = Broker(work)
    bport = broker.port
    sub = Subscriber(bport)
    server: subprocess.Popen[bytes] | None = None
    try:
        print(f"baseline: one box, local engine, {args.seconds:g} s of {args.wav.name} at real speed", flush=True)
        base = run_boxes(work, wav, ["local"], bport, sub, {})
        server, url = start_server(work, bport)
        remote = {
            "ASRBOX_ASR__ENGINE": "remote",
            "ASRBOX_ASR__REMOTE__URL": url,
            "ASRBOX_ASR__REMOTE__PARTIALS": "true" if args.partials else "false",
        }
        print("one remote box alone", flush=True)
        one = run_boxes(work, wav, ["solo"], bport, sub, remote)
        names = [f"box{i + 1}" for i in range(args.boxes)]
        print(f"{args.boxes} remote boxes sharing the server", flush=True)
        fleet = run_boxes(work, wav, names, bport, sub, remote)
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
        sub.close()
        broker.close()
    res = {"args": {k: str(v) for k, v in vars(args).items()}, "cores": os.cpu_count(), "load": os.getloadavg()}
    res |= {"baseline": base, "solo": one, "fleet": fleet, "work": str(work)}
    print(report(res))
    emit_json(res, args.json, echo=False)
    ok = all(
        r["exactly_once"] and r["all_done"] and r["rc"] == 0 for r in [*base.values(), *one.values(), *fleet.values()]
    )
    return 0 if ok else 1


def report(res: dict[str, Any]) -> str:
    b = res["baseline"]["local"]
    lines = [
        "| box | engine | finals | exactly once | attempts | p50 ms | p95 ms | max ms | p50 / baseline | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, engine: str, r: dict[str, Any]) -> str:
        once = "yes" if r["exactly_once"] and r["all_done"] else "**NO**"
        return (
            f"| {name} | {engine} | {r['finals']}/{r['rows']} | {once} | {r['max_attempts_used']} | {r['p50']:.0f} | "
            f"{r['p95']:.0f} | {r['max']:.0f} | {r['p50'] / b['p50']:.2f} | {r['peak_rss_mb']:.0f} |"
        )

    lines.append(row("local (baseline)", "whisper, local", b))
    lines.append(row("solo", "remote, alone", res["solo"]["solo"]))
    for name, r in res["fleet"].items():
        lines.append(row(name, "remote, 8 sharing" if len(res["fleet"]) == 8 else "remote, shared", r))
    every = [x for r in res["fleet"].values() for x in r["latency_ms"]]
    lines.append(
        f"\nall fleet finals: {len(every)}, p50 {pct(every, 0.5):.0f} ms, p95 {pct(every, 0.95):.0f} ms; "
        f"load average at the end {res['load'][0]:.1f} on {res['cores']} cores"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
