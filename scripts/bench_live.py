"""Live benchmark: the daemon as a subprocess plays a recording as its microphone at real speed, against a real
Mosquitto on a free loopback port; a subscriber records what it publishes and when.

Reports: finals against the reference utterances (none lost, none merged), latency from end of speech to the
final handed to the broker (the payload's `latency_ms`), delay of the first partial after speech starts,
peak RSS of the daemon, and, as the baseline measured in the same run, the time plain faster-whisper
(`WhisperModel(dir).transcribe()` at its defaults) needs for each utterance once it has ended.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import ROOT, Broker, clean_env, pct, rss_mb, start_daemon, subscribe


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def run_live(wav: Path, segments_json: Path, speed: float = 1.0, loops: int = 1, root: Path = ROOT) -> dict[str, Any]:
    """The daemon of the tree at `root` (this one, or a worktree of an earlier commit) on `wav`."""
    work = Path(tempfile.mkdtemp(prefix="asrbox-live-"))
    broker = Broker(work)
    msgs: list[tuple[float, str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_message(c: Any, u: Any, m: Any) -> None:
        try:
            body = json.loads(m.payload)
        except ValueError:
            body = {"raw": m.payload.decode(errors="replace")}
        with lock:
            msgs.append((time.time(), m.topic, body))

    sub = subscribe(broker.port, "asrbox/bench/#", on_message)
    env = clean_env(
        ASRBOX_STORE__PATH=str(work / "store"),
        ASRBOX_MQTT__PORT=str(broker.port),
        ASRBOX_MQTT__DEVICE_ID="bench",
        ASRBOX_MQTT__HOST="127.0.0.1",
    )
    args = ["--source", str(wav), "--speed", str(speed), "--exit-at-end", "--loops", str(loops)]
    t0 = time.time()
    proc = start_daemon(env, work / "daemon.log", *args, cwd=root)
    peak = 0.0
    rss: list[tuple[float, float]] = []
    while proc.poll() is None:
        now = rss_mb(proc.pid)
        peak = max(peak, now)
        if not rss or time.time() - t0 - rss[-1][0] >= 5.0:
            rss.append((time.time() - t0, now))
        time.sleep(0.2)
    wall = time.time() - t0
    time.sleep(0.5)
    sub.loop_stop()
    broker.close()

    finals = [b for _, t, b in msgs if t.endswith("/transcript/final")]
    partials = [(ts, b) for ts, t, b in msgs if t.endswith("/transcript/partial")]
    refs = json.loads(segments_json.read_text())
    first_partial: list[float] = []
    for f in finals:
        mine = [ts for ts, b in partials if b.get("utterance_id") == f["utterance_id"]]
        if mine:
            speech_start = _epoch(f["started_at"]) + 0.3  # started_at includes the 300 ms pre-roll
            first_partial.append(min(mine) - speech_start)
    latencies = [float(f["latency_ms"]) for f in finals if f.get("latency_ms") is not None]
    seqs = [int(f["seq"]) for f in finals]
    return {
        "work": str(work),
        "rc": proc.returncode,
        "wall_s": wall,
        "finals": finals,
        "refs": refs,
        "seq_gapless": seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False,
        "latency_ms": latencies,
        "first_partial_s": first_partial,
        "partials": len(partials),
        "peak_rss_mb": peak,
        "rss": rss,
    }


def baseline_per_utterance(wav: Path, refs: list[dict[str, Any]]) -> list[float]:
    """Plain faster-whisper at its defaults, one ended utterance at a time (reference cut points)."""
    from faster_whisper import WhisperModel, decode_audio

    from daemon.asr.models import prepare_embedded_model
    from daemon.settings import load_settings

    model = WhisperModel(str(prepare_embedded_model(load_settings(None).asr.cache_dir)))
    audio = decode_audio(str(wav))
    times = []
    for r in refs:
        clip = audio[int(r["start_s"] * 16000) : int(r["end_s"] * 16000)]
        t = time.perf_counter()
        segments, _ = model.transcribe(clip)
        "".join(s.text for s in segments)
        times.append(time.perf_counter() - t)
    return times


def report(res: dict[str, Any], base: list[float]) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench import edit_distance, normalize

    finals, refs = res["finals"], res["refs"]
    lines = []
    matched = 0
    if len(finals) == len(refs):
        for f, r in zip(finals, refs, strict=True):
            ref_w, hyp_w = normalize(r["text"], "en"), normalize(f["text"], "en")
            if edit_distance(ref_w, hyp_w) / max(len(ref_w), 1) <= 0.5:
                matched += 1
    ref_all = [w for r in refs for w in normalize(r["text"], "en")]
    hyp_all = [w for f in finals for w in normalize(f["text"], "en")]
    wer = edit_distance(ref_all, hyp_all) / max(len(ref_all), 1)
    lat = res["latency_ms"]
    fp = res["first_partial_s"]
    b50 = statistics.median(base) * 1000 if base else float("nan")
    lines.append(f"| finals / reference utterances | {len(finals)} / {len(refs)} (one-to-one: {matched}) |")
    lines.append(f"| seq gapless | {res['seq_gapless']} |")
    lines.append(f"| WER over the file | {100 * wer:.1f}% |")
    lines.append(
        f"| latency end of speech -> broker, p50 / p95 / max | {pct(lat, 0.5):.0f} / {pct(lat, 0.95):.0f} / "
        f"{max(lat) if lat else float('nan'):.0f} ms |"
    )
    lines.append(
        f"| first partial after speech start, p50 / max | {pct(fp, 0.5):.2f} / "
        f"{max(fp) if fp else float('nan'):.2f} s ({len(fp)} utterances with partials, "
        f"{res['partials']} partials) |"
    )
    lines.append(f"| peak RSS of the daemon | {res['peak_rss_mb']:.0f} MB |")
    lines.append(
        f"| baseline: plain faster-whisper per ended utterance, p50 / p95 | {b50:.0f} / "
        f"{pct(base, 0.95) * 1000:.0f} ms |"
    )
    lines.append(f"| ratio latency p50 / baseline p50 | **{pct(lat, 0.5) / b50:.2f}** |")
    return "| measure | value |\n|---|---|\n" + "\n".join(lines) + "\n"


def compare(now: dict[str, Any], before: dict[str, Any], rev: str) -> str:
    """This tree against `rev`, measured in the same run: latency and first partial, lower is better."""
    rows = []
    for name, key, scale, unit in (
        ("latency p50", "latency_ms", 1.0, "ms"),
        ("first partial p50", "first_partial_s", 1.0, "s"),
    ):
        for q in (0.5, 0.95) if key == "latency_ms" else (0.5,):
            a, b = pct(now[key], q) * scale, pct(before[key], q) * scale
            label = name.replace("p50", f"p{round(q * 100)}")
            rows.append(f"| {label} | {a:.2f} {unit} | {b:.2f} {unit} | **{a / b:.2f}** |")
    rows.append(
        f"| finals / gapless | {len(now['finals'])} / {now['seq_gapless']} | {len(before['finals'])} / "
        f"{before['seq_gapless']} | |"
    )
    rows.append(
        f"| peak RSS | {now['peak_rss_mb']:.0f} MB | {before['peak_rss_mb']:.0f} MB | "
        f"{now['peak_rss_mb'] / before['peak_rss_mb']:.2f} |"
    )
    return f"| measure | this tree | {rev} | ratio |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def soak_report(res: dict[str, Any], loops: int, speed: float, audio_s: float) -> str:
    rss = [(t, m) for t, m in res["rss"] if m > 0]
    n = len(rss)
    warm = rss[max(1, n // 10)][1] if n > 2 else float("nan")  # after warm-up: 10% into the run
    late = max(m for _, m in rss[-max(1, n // 5) :]) if rss else float("nan")
    step = max(1, n // 12)
    curve = " ".join(f"{t / 60:.0f}min:{m:.0f}" for t, m in rss[::step])
    finals = res["finals"]
    seqs = [int(f["seq"]) for f in finals]
    return (
        "| measure | value |\n|---|---|\n"
        f"| audio played | {loops} x {audio_s:.0f} s = {loops * audio_s / 3600:.2f} h at {speed:g}x |\n"
        f"| finals | {len(finals)} (expected {loops * len(res['refs'])}), seq gapless: {res['seq_gapless']} |\n"
        f"| wall time | {res['wall_s'] / 60:.1f} min |\n"
        f"| RSS after warm-up (baseline) / max in the last fifth / peak | {warm:.0f} / {late:.0f} / "
        f"{res['peak_rss_mb']:.0f} MB |\n"
        f"| growth after warm-up | **{100 * (late - warm) / warm:+.1f}%** |\n"
        f"| RSS curve (MB) | {curve} |\n"
        f"| seq range | {min(seqs) if seqs else '-'}..{max(seqs) if seqs else '-'} |\n"
    )
