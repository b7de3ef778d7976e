"""Jobs against baselines measured in the same run (docs/benchmarks.md, "Jobs").

1. Throughput: the same 10 files as one job through `POST /api/jobs` (upload to the last file done, the daemon
   idle otherwise) against `asrbox transcribe` of the ten (the process's wall time, model load included, and
   its transcription alone, measured in this process with the CLI's BatchTranscriber). Runs alternate; medians.
2. Live latency: the daemon plays a speech recording at real speed (`--source`), finals' `latency_ms` as
   published; p50 with 10-file jobs running back to back the whole time, against the idle p50. Runs alternate.
3. Same text: the job's text of each file against `asrbox transcribe`'s (count of identical files).

    .venv/bin/python scripts/bench_jobs.py [--runs 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchlib import EVAL, ROOT, Broker, clean_env, free_port, pct, start_daemon, subscribe, wait_ready

FILES = [
    "en/en_jfk.wav",
    "en/en_librispeech_1272-128104-0001.wav",
    "en/en_librivox_sense_and_sensibility_0920.wav",
    "en/en_hifitts6097_swag_05_tompkins_0390.wav",
    "en/en_rhasspy_turn_on_the_living_room_lamp.wav",
    "zh/zh_aishell1_BAC009S0764W0121.wav",
    "zh/zh_aishell1_BAC009S0724W0121.wav",
    "zh/zh_funasr_llamacpp_sample.wav",
    "zh/zh_paddlespeech_zh.wav",
    "en/en_sphinx_cards_002.wav",
]
LIVE = "en/en_long_concat_hifitts6097.wav"
BOUNDARY = "benchjobs" + uuid.uuid4().hex


class Box:
    """A daemon with its HTTP face and a Mosquitto broker, in a scratch folder."""

    def __init__(self, source: Path, speed: float = 1.0, exit_at_end: bool = False, listen: bool = False) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="asrbox-jobs-"))
        self.port = free_port()
        self.broker = Broker(self.work)
        self.finals: list[dict[str, Any]] = []
        topic = "asrbox/bench/transcript/final"
        self.sub = subscribe(self.broker.port, topic, lambda c, u, m: self.finals.append(json.loads(m.payload)))
        env = clean_env(
            ASRBOX_STORE__PATH=str(self.work / "store"),
            ASRBOX_MQTT__PORT=str(self.broker.port),
            ASRBOX_MQTT__HOST="127.0.0.1",
            ASRBOX_MQTT__DEVICE_ID="bench",
            ASRBOX_HTTP__ENABLED="true",
            ASRBOX_HTTP__PORT=str(self.port),
            ASRBOX_SESSION__LISTEN_ON_START="true" if listen else "false",
        )
        args = ["--source", str(source), "--speed", str(speed), *(["--exit-at-end"] if exit_at_end else [])]
        log = self.work / "daemon.log"
        self.proc = start_daemon(env, log, *args)
        wait_ready(self.proc, lambda: self.call("GET", "/api/jobs?limit=1")[0] == 200, "the jobs API", log)

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
            r = conn.getresponse()
            data = r.read()
            return r.status, json.loads(data) if r.getheader("content-type", "").startswith(
                "application/json"
            ) else data
        finally:
            conn.close()

    def submit(self, files: list[Path]) -> str:
        parts = [
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{f.name}"\r\n\r\n'.encode()
            + f.read_bytes()
            + b"\r\n"
            for f in files
        ]
        body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
        status, job = self.call("POST", "/api/jobs", body, f"multipart/form-data; boundary={BOUNDARY}")
        assert status == 201, job
        return str(job["job"]["id"])

    def wait(self, job_id: str) -> dict[str, Any]:
        while True:
            _, job = self.call("GET", f"/api/jobs/{job_id}")
            if job["status"] in ("done", "failed", "cancelled"):
                return dict(job)
            time.sleep(0.1)

    def texts(self, job: dict[str, Any]) -> dict[str, str]:
        out = {}
        for f in job["files"]:
            _, body = self.call("GET", f"/api/jobs/{job['id']}/files/{f['idx']}/result?format=txt")
            out[f["name"]] = body.decode().rstrip("\n")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.sub.loop_stop()
        self.broker.close()
        shutil.rmtree(self.work, ignore_errors=True)


def cli_run(files: list[Path]) -> tuple[float, dict[str, str]]:
    """`asrbox transcribe` of the files: wall time (model load included) and each file's text."""
    env = clean_env()
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "daemon", "transcribe", "--no-store", "--no-progress", "-f", "json", *map(str, files)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    return wall, {Path(x["file"]).name: x["text"] for x in map(json.loads, r.stdout.splitlines())}


def cli_inprocess(files: list[Path]) -> float:
    """The CLI's BatchTranscriber on the ten files, model already loaded: transcription time alone."""
    from functools import partial

    from daemon.asr.engine import load_engine
    from daemon.audio.vad import load_vad
    from daemon.batch.transcribe import BatchTranscriber
    from daemon.settings import load_settings
    from daemon.text.pipeline import TextPipeline

    s = load_settings(None, {})
    engine = load_engine(s.asr)
    try:
        lang = None if s.asr.language == "auto" else s.asr.language
        runner = BatchTranscriber(
            engine, partial(load_vad, s.vad.engine), s.vad, TextPipeline(s.text), None,
            s.asr.batch_size, language=lang, force=True, hotwords=s.text.terms(),
        )  # fmt: skip
        t0 = time.perf_counter()
        for _ in runner.run(files):
            pass
        return time.perf_counter() - t0
    finally:
        engine.close()


def throughput(files: list[Path], runs: int) -> dict[str, Any]:
    job_s, cli_s, core_s, same = [], [], [], []
    box = Box(EVAL / "en" / "en_sphinx_cards_001.wav")
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            job = box.wait(box.submit(files))
            job_s.append(time.perf_counter() - t0)
            texts = box.texts(job)
            wall, cli_texts = cli_run(files)
            cli_s.append(wall)
            core_s.append(cli_inprocess(files))
            same.append(sum(texts[f.name] == cli_texts[f.name] for f in files))
    finally:
        box.close()
    return {"job_s": job_s, "cli_s": cli_s, "cli_core_s": core_s, "same": same}


def live(files: list[Path], busy: bool) -> dict[str, Any]:
    box = Box(EVAL / LIVE, speed=1.0, exit_at_end=True, listen=True)
    jobs = 0
    try:
        while box.proc.poll() is None:
            if busy:
                job_id = box.submit(files)
                jobs += 1
                while box.proc.poll() is None and box.call("GET", f"/api/jobs/{job_id}")[1]["status"] == "running":
                    time.sleep(0.2)
            else:
                time.sleep(0.2)
    except OSError:
        pass  # the daemon exited at the end of the recording
    finally:
        box.proc.wait(120)
        time.sleep(0.5)
        box.close()
    lat = [float(f["latency_ms"]) for f in box.finals if f.get("latency_ms") is not None]
    return {"p50": statistics.median(lat) if lat else float("nan"), "p90": pct(lat, 0.9), "n": len(lat), "jobs": jobs}


def report_throughput(t: dict[str, Any], audio_s: float, n: int, runs: int) -> None:
    job, cli, core = statistics.median(t["job_s"]), statistics.median(t["cli_s"]), statistics.median(t["cli_core_s"])
    print(f"throughput, {n} files ({audio_s:.1f} s of audio), {runs} runs, medians:")
    print(f"  job via POST /api/jobs (upload to last file done): {job:.1f} s  {t['job_s']}")
    print(f"  asrbox transcribe, process wall (model load included): {cli:.1f} s  {t['cli_s']}")
    print(f"  asrbox transcribe, transcription alone (in-process): {core:.1f} s  {t['cli_core_s']}")
    print(f"  ratio (throughput, job vs CLI): {cli / job:.2f}x wall, {core / job:.2f}x transcription alone")
    print(f"  identical text, job vs CLI: {min(t['same'])}/{n} files (worst run)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    files = [EVAL / f for f in FILES]
    audio_s = sum(json.loads(line)["duration_s"] for line in (EVAL / "manifest.jsonl").read_text().splitlines()
                  if json.loads(line)["path"] in FILES)  # fmt: skip
    if not args.skip_throughput:
        report_throughput(throughput(files, args.runs), audio_s, len(files), args.runs)
    if args.skip_live:
        return 0
    idle, busy = [], []
    for _ in range(args.runs):
        idle.append(live(files, busy=False))
        busy.append(live(files, busy=True))
    p_idle = statistics.median([r["p50"] for r in idle])
    p_busy = statistics.median([r["p50"] for r in busy])
    print(f"live latency (finals of {LIVE} at 1x), {args.runs} runs alternating:")
    print(f"  idle: p50 {p_idle:.0f} ms  {[(round(r['p50']), r['n']) for r in idle]}")
    print(
        f"  with 10-file jobs back to back: p50 {p_busy:.0f} ms  {[(round(r['p50']), r['n'], r['jobs']) for r in busy]}"
    )
    print(
        f"  ratio busy/idle p50: {p_busy / p_idle:.2f}x; p90 idle {idle[0]['p90']:.0f} ms, busy {busy[0]['p90']:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
