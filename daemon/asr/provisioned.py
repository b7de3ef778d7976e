"""Model folders an operator provisioned (copied onto the box): what is there, and whether it is whole.

`scripts/fetch-models` (on a machine with internet) writes `asrbox-manifest.json` into each folder: the
source, and the size and sha256 of every file. `asrbox models list` shows the folders under `asr.models_dir`;
`asrbox models verify` checks that each has what its kind needs and that every file matches its manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.asr.models import sha256_file
from daemon.errors import ConfigError
from daemon.settings import AsrSettings

MANIFEST = "asrbox-manifest.json"


@dataclass(frozen=True)
class Provisioned:
    name: str
    path: Path
    kind: str  # the config.yaml model class, or "?"
    runtimes: tuple[str, ...]  # "torch" (model.pt), "onnx" (model.onnx), "onnx-int8" (model_quant.onnx)
    manifest: dict[str, Any] | None


def describe(folder: Path) -> Provisioned:
    try:
        kind = model_kind(folder)
    except ConfigError:
        kind = "?"
    runtimes = tuple(
        r for r, f in (("torch", "model.pt"), ("onnx", "model.onnx"), ("onnx-int8", "model_quant.onnx"))
        if (folder / f).is_file()
    )  # fmt: skip
    manifest = None
    if (folder / MANIFEST).is_file():
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {"broken": True}
    return Provisioned(folder.name, folder, kind, runtimes, manifest)


def scan(models_dir: Path) -> list[Provisioned]:
    if not models_dir.is_dir():
        return []
    return [describe(p) for p in sorted(models_dir.iterdir()) if p.is_dir()]


def problems(folder: Path, rehash: bool = True) -> list[str]:
    """What is wrong with a folder (empty = fine)."""
    p = describe(folder)
    out: list[str] = []
    if p.kind == "?":
        out.append("no config.yaml naming a model class")
    if not p.runtimes:
        out.append("no weights (model.pt, model.onnx or model_quant.onnx)")
    needs_features = p.kind.startswith(("SenseVoice", "Paraformer", "SeacoParaformer", "BiCifParaformer", "Fsmn"))
    if needs_features and not (folder / "am.mvn").is_file():
        out.append("am.mvn missing")
    is_asr = p.kind.startswith(("SenseVoice", "Paraformer", "SeacoParaformer", "BiCifParaformer"))
    tokenizer = [*folder.glob("tokens.*"), *folder.glob("*.bpe.model")]
    if is_asr and not tokenizer:
        out.append("no tokenizer (tokens.json, tokens.txt or *.bpe.model)")
    if p.manifest is None:
        return out
    if p.manifest.get("broken"):
        return [*out, f"{MANIFEST} is unreadable"]
    for rel, meta in sorted(p.manifest.get("files", {}).items()):
        f = folder / rel
        if not f.is_file():
            out.append(f"{rel} missing")
        elif f.stat().st_size != meta.get("size"):
            out.append(f"{rel} has {f.stat().st_size} bytes, the manifest says {meta.get('size')}")
        elif rehash and sha256_file(f) != meta.get("sha256"):
            out.append(f"{rel} does not match its sha256")
    return out


def write_manifest(folder: Path, source: str, revision: str | None = None) -> dict[str, Any]:
    files = {
        str(f.relative_to(folder)): {"size": f.stat().st_size, "sha256": sha256_file(f)}
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != MANIFEST and ".git" not in f.parts
    }
    doc = {"name": folder.name, "source": source, "revision": revision, "files": files}
    (folder / MANIFEST).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return doc


def model_kind(folder: Path) -> str:
    """The `model:` class named in the folder's config.yaml (SenseVoiceSmall, Paraformer, ...)."""
    cfg = folder / "config.yaml"
    if not cfg.is_file():
        raise ConfigError(f"config error: asr.model: {folder} has no config.yaml (not a FunASR model folder)")
    for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^model:\s*['\"]?([A-Za-z0-9_]+)", line)
        if m:
            return m.group(1)
    raise ConfigError(f"config error: asr.model: {cfg} names no model class")


def model_folder(settings: AsrSettings, engine: str) -> Path:
    """The configured model's folder for a FunASR-family engine, or a one-line configuration error."""
    if not settings.model:
        raise ConfigError(f"config error: asr.model: the {engine} engine needs a local model folder")
    folder = Path(resolve(settings.model, settings.models_dir))
    if not folder.is_dir():
        raise ConfigError(f"config error: asr.model: {folder} is not a folder")
    return folder


def resolve(model: str, models_dir: Path) -> str:
    """`asr.model` as given, or the folder of that name under `asr.models_dir`."""
    if model and not Path(model).is_absolute() and not Path(model).exists() and (models_dir / model).is_dir():
        return str(models_dir / model)
    return model
