"""The Engine protocol and the engine registry: `load_engine(settings)` imports the configured backend lazily.

Adding a backend is one line in `ENGINES` (name -> "module:Class"; the class takes the AsrSettings).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, cast

from daemon.errors import ConfigError
from daemon.settings import AsrSettings
from daemon.transcript import Audio, DecodeOptions, EngineInfo, Transcript

ENGINES: dict[str, str] = {
    "whisper": "daemon.asr.whisper:WhisperEngine",
    "funasr": "daemon.asr.funasr_engine:FunasrEngine",
    "onnx": "daemon.asr.onnx_engine:OnnxEngine",
    "remote": "daemon.asr.remote:RemoteEngine",
}


class Engine(Protocol):
    info: EngineInfo

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        """Transcribe each 16 kHz mono chunk; the result list is in the same order."""
        ...

    def close(self) -> None: ...


def load_engine(settings: AsrSettings) -> Engine:
    target = ENGINES.get(settings.engine)
    if target is None:
        raise ConfigError(f"config error: asr.engine: {settings.engine!r} is not available in this build yet")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cast(Engine, cls(settings))
