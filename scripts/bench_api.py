"""The OpenAI face's overhead, against baselines measured in the same run (docs/benchmarks.md, "HTTP API").

1. A ~5 s clip through `POST /v1/audio/transcriptions` (client wall time: upload, decode, VAD, the engine on the
   daemon's shared worker, the record, the answer) against the engine's own decode time of the same clip (the
   same model loaded in this process, `engine.transcribe` on the decoded audio only). Runs alternate; medians.
2. The same files through the API and `asrbox transcribe -f txt`: identical text (count), and the wall time of
   the ten files one request at a time against one `asrbox transcribe` of all ten (model load included; at
   `--nice 0`, the daemon's priority: by default the CLI yields the CPU to a live daemon).

    .venv/bin/python scripts/bench_api.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import httpx2 as httpx
from benchlib import ROOT, clean_env, clip, free_port, http_ok, quiet_wav, wait_ready

CLIPS = ["en_hifitts6097_glitteringplain_11_morris_0037", "zh_paddlespeech_zh"]  # 5.04 s, 5.00 s
FILES = [
    "en_jfk",
    "en_librispeech_1272-128104-0001",
    "en_librivox_sense_and_sensibility_0920",
    "en_hifitts6097_swag_05_tompkins_0390",
    "en_rhasspy_turn_on_the_living_room_lamp",
    "zh_aishell1_BAC009S0764W0121",
    "zh_aishell1_BAC009S0724W0121",
    "zh_funasr_llamacpp_sample",
    "zh_cosyvoice_zero_shot_prompt",
    "zh_paddlespeech_zh",
]


def start_daemon(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    quiet = quiet_wav(work / "quiet.wav", noise=300)  # faint noise, played once: the live path then idles
    port = free_port()
    env = {**env, "ASRBOX_HTTP__ENABLED": "true", "ASRBOX_HTTP__PORT": str(port)}
    proc = benchlib.start_daemon(env, work / "daemon.log", "--source", str(quiet))
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, lambda: http_ok(f"{url}/health"), "a healthy daemon", work / "daemon.log", timeout=180)
    return proc, url


def api_text(url: str, path: Path) -> tuple[str, float]:
    t0 = time.perf_counter()
    r = httpx.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": (path.name, path.read_bytes(), "audio/wav")},
        data={"response_format": "text"},
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return r.text, elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from daemon.asr.engine import load_engine
    from daemon.audio.decode import decode_file
    from daemon.settings import load_settings
    from daemon.transcript import DecodeOptions

    work = Path(tempfile.mkdtemp(prefix="bench_api."))
    env = clean_env(
        keep_cache=True,
        ASRBOX_STORE__PATH=str(work / "store"),
        ASRBOX_MQTT__HOST="127.0.0.1",
        ASRBOX_MQTT__PORT=str(free_port()),
    )
    proc, url = start_daemon(work, env)
    settings = load_settings(None, {"asr": {"cache_dir": os.environ.get("ASRBOX_ASR__CACHE_DIR")}})
    engine = load_engine(settings.asr)
    try:
        print(f"bench_api: {os.cpu_count()} CPUs, model {engine.info.model}, {args.runs} runs each, alternating")
        for cid in CLIPS:
            path = clip(cid)[0]
            audio = decode_file(path)
            api_text(url, path)  # warm both paths once
            engine.transcribe([audio], DecodeOptions())
            api_s, eng_s = [], []
            for _ in range(args.runs):
                api_s.append(api_text(url, path)[1])
                t0 = time.perf_counter()
                engine.transcribe([audio], DecodeOptions())
                eng_s.append(time.perf_counter() - t0)
            a, e = statistics.median(api_s), statistics.median(eng_s)
            print(f"{cid} ({audio.size / 16000:.2f} s): API {a:.3f} s, engine alone {e:.3f} s, ratio {a / e:.2f}x")
        paths = [clip(c)[0] for c in FILES]
        t0 = time.perf_counter()
        api = [api_text(url, p)[0] for p in paths]
        api_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "-m", "daemon", "transcribe", "--no-store", "--no-progress", "--nice", "0", "-f", "json",
             "-o", "-", *map(str, paths)],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        cli_wall = time.perf_counter() - t0
        cli_texts = [json.loads(line)["text"] + "\n" for line in cli.stdout.splitlines() if line.strip()]
        same = sum(a == c for a, c in zip(api, cli_texts, strict=True))
        print(f"same text, API vs asrbox transcribe: {same}/{len(paths)} files")
        print(
            f"{len(paths)} files: API one request at a time {api_wall:.1f} s, asrbox transcribe {cli_wall:.1f} s "
            f"(incl. its model load); throughput ratio {cli_wall / api_wall:.2f}x"
        )
    finally:
        engine.close()
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
