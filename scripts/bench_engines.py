"""Engine benchmark: real-size FunASR architectures with random weights (speed and memory do not depend on the
weights) next to the embedded Whisper base, in the same run, on the same clips.

    scripts/bench --engine funasr,onnx [--batch 1,8] [--write-doc]

Each engine runs in its own process (peak RSS is per process). SenseVoice-Small (torch, float32), its ONNX
export (float32 and int8) and Paraformer-large (torch) are built once into var/bench-models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, eval_rows

MODELS = ROOT / "var" / "bench-models"


def _clips(manifest: Path, seconds: float) -> list[Path]:
    out, total = [], 0.0
    for r in eval_rows(manifest, {"zh", "en"}, max_s=30):
        if total >= seconds:
            break
        out.append(manifest.parent / r["path"])
        total += r["duration_s"]
    return out


def _prepare() -> dict[str, Path]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import funasr_models

    sv, pf = MODELS / "SenseVoiceSmall-real", MODELS / "Paraformer-large-real"
    if not (sv / "model_quant.onnx").is_file():
        print("bench: building real-size SenseVoice-Small (random weights) and its ONNX export", file=sys.stderr)
        funasr_models.build_sensevoice(sv, "real")
        funasr_models.export_onnx(sv)
    if not (pf / "model.pt").is_file():
        print("bench: building real-size Paraformer-large (random weights)", file=sys.stderr)
        funasr_models.build_paraformer(pf, "real")
    return {"sensevoice": sv, "paraformer": pf}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """In a child process: load the engine, transcribe the clips in batches, report time and memory."""
    from daemon.asr.engine import load_engine
    from daemon.audio.decode import decode_file
    from daemon.settings import AsrSettings
    from daemon.transcript import DecodeOptions

    audios = [decode_file(Path(p)) for p in spec["clips"]]
    seconds = sum(a.size for a in audios) / 16000
    t0 = time.perf_counter()
    eng = load_engine(AsrSettings(**spec["settings"]))
    load_s = time.perf_counter() - t0
    eng.transcribe(audios[:1], DecodeOptions(language="zh"))  # warm-up
    batch = spec["batch"]
    t0 = time.perf_counter()
    for i in range(0, len(audios), batch):
        eng.transcribe(
            audios[i : i + batch], DecodeOptions(language=None if spec["label"].startswith("whisper") else "zh")
        )
    dt = time.perf_counter() - t0
    # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across fork + exec)
    status = Path("/proc/self/status").read_text()
    rss = int(status.split("VmHWM:")[1].split()[0]) / 1024
    info = eng.info
    return {"label": spec["label"], "batch": batch, "load_s": load_s, "time_s": dt, "audio_s": seconds,
            "rtf": dt / seconds, "rss_mb": rss, "device": info.device, "compute": info.compute_type}  # fmt: skip


def _params(models: dict[str, Path]) -> str:
    """Parameter counts from the saved float32 weights."""
    return ", ".join(f"{p.name}: {(p / 'model.pt').stat().st_size / 4e6:.0f} M parameters" for p in models.values())


def bench(manifest: Path, engines: list[str], batches: list[int], seconds: float = 90.0) -> str:
    clips = [str(p) for p in _clips(manifest, seconds)]
    models = _prepare() if set(engines) & {"funasr", "onnx"} else {}
    specs: list[dict[str, Any]] = []
    for b in batches:
        specs.append({"label": "whisper base (embedded, int8)", "settings": {"batch_size": max(b, 1)}, "batch": b})
        if "funasr" in engines:
            specs.append({"label": "SenseVoice-Small torch fp32", "settings": {"engine": "funasr",
                          "model": str(models["sensevoice"])}, "batch": b})  # fmt: skip
            specs.append({"label": "Paraformer-large torch fp32", "settings": {"engine": "funasr",
                          "model": str(models["paraformer"])}, "batch": b})  # fmt: skip
        if "onnx" in engines:
            for ct, label in (("float32", "fp32"), ("int8", "int8")):
                specs.append({"label": f"SenseVoice-Small onnx {label}", "settings": {"engine": "onnx",
                              "model": str(models["sensevoice"]), "compute_type": ct}, "batch": b})  # fmt: skip
    results = []
    for spec in specs:
        spec["clips"] = clips
        out = subprocess.run(
            [sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"bench: {spec['label']} failed")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"bench: {r['label']} batch {r['batch']}: RTF {r['rtf']:.3f}, RSS {r['rss_mb']:.0f} MB", file=sys.stderr)
        results.append(r)
    lines = [
        f"{len(clips)} zh/en clips, {results[0]['audio_s']:.0f} s of audio; CPU, {os.cpu_count()} cores; "
        f"random weights of the real architectures ({_params(models)}). "
        "Ratio = time / Whisper base's time at the same batch in this run.\n",
        "| engine | batch | device | RTF | ratio vs Whisper base | load (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in batches:
        base = next(r for r in results if r["batch"] == b and r["label"].startswith("whisper"))
        for r in (x for x in results if x["batch"] == b):
            lines.append(f"| {r['label']} | {b} | {r['device']} | {r['rtf']:.3f} | {r['time_s'] / base['time_s']:.2f} "
                         f"| {r['load_s']:.1f} | {r['rss_mb']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(json.dumps(run_one(json.loads(sys.argv[1]))))
