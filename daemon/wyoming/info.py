"""The `info` answer to `describe`: one ASR program (asrbox) with the one model the daemon runs."""

from __future__ import annotations

from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from daemon import __version__
from daemon.lang import model_languages
from daemon.settings import Settings
from daemon.transcript import EngineInfo

UPSTREAM = {
    "whisper": Attribution(name="OpenAI Whisper (CTranslate2)", url="https://github.com/openai/whisper"),
    "funasr": Attribution(name="FunASR", url="https://github.com/modelscope/FunASR"),
}


def languages(settings: Settings, engine: EngineInfo) -> list[str]:
    """What the model recognises; only the configured language when the box is fixed to one."""
    if settings.asr.language != "auto":
        return [settings.asr.language]
    return list(model_languages(engine.name, engine.model) or ("zh", "en"))


def info_event(settings: Settings, engine: EngineInfo) -> Event:
    upstream = UPSTREAM["whisper" if engine.name == "whisper" else "funasr"]
    model = AsrModel(
        name=engine.model,
        description=f"{engine.name} {engine.model} ({engine.device}, {engine.compute_type})",
        attribution=upstream,
        installed=True,
        version=None,
        languages=languages(settings, engine),
    )
    program = AsrProgram(
        name="asrbox",
        description="asrbox: private, offline speech to text",
        attribution=Attribution(name="asrbox", url=""),
        installed=True,
        version=__version__,
        models=[model],
        supports_transcript_streaming=True,
    )
    return Info(asr=[program]).event()
