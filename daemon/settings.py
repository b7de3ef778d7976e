"""Frozen, validated settings: one model per TOML section, read from a TOML file and `ASRBOX_SECTION__KEY`.

Precedence (highest first): explicit overrides (CLI flags), environment, TOML file, defaults.
Unknown keys are rejected. Secrets are read from files (or a systemd credential), never from the TOML itself.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from daemon.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/asrbox/asrbox.toml")


def default_device_id() -> str:
    """The host name, lower-cased and reduced to `[a-z0-9_-]` (the MQTT contract's default)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-")
    return name or "asrbox"


def _default_store_path() -> Path:
    state = os.environ.get("STATE_DIRECTORY")
    return Path(state.split(":")[0]) if state else Path("var")


def _default_cache_dir() -> Path:
    cache = os.environ.get("CACHE_DIRECTORY")
    if cache:
        return Path(cache.split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "asrbox"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteSettings(Section):
    """`asr.engine = "remote"`: an OpenAI-compatible server on the LAN recognizes (docs/integrations.md, fleet)."""

    url: str = Field("", description="the server's base URL, e.g. http://gpu-server:8000 (/v1/... is appended)")
    model: str = Field("whisper-1", description="the `model` form field the server expects")
    api_key_file: Path | None = Field(None, description="a file holding the Bearer key (never in this file)")
    timeout_s: float = Field(600.0, gt=0, le=3600, description="one request, the busy server's queue included")
    partials: bool = Field(True, description="send drafts for partial transcripts too (off: finals only)")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v.endswith("/v1"):
            v = v[:-3]
        if v and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", v):
            raise ValueError("must be an http:// or https:// URL such as http://gpu-server:8000")
        return v

    @field_validator("api_key_file")
    @classmethod
    def _key_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v


class AsrSettings(Section):
    engine: Literal["whisper", "funasr", "onnx", "remote"] = "whisper"
    model: str = Field("", description="model folder; empty = the embedded Whisper base")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = Field("auto", description="auto = int8 on CPU, float16 on CUDA")
    language: str = Field("auto", description="'auto' or a language code such as 'zh' or 'en'")
    batch_size: int = Field(
        4,
        ge=1,
        le=64,
        description="windows decoded together; 4 keeps transcribe under 600 MB (8: ~8% faster, ~780 MB)",
    )
    beam_size: int = Field(5, ge=1, le=10)
    live_beam_size: int = Field(5, ge=1, le=10, description="beam for live finals")
    max_attempts: int = Field(
        3, ge=1, le=100, description="tries per utterance before it is marked failed (reported on error)"
    )
    live_short_window: bool = Field(
        True, description="live finals: encode only the utterance (+1 s) first; full 30 s window for Chinese/Japanese"
    )
    threads: int = Field(0, ge=0, le=256, description="CPU threads; 0 = all cores")
    models_dir: Path = Field(
        default_factory=lambda: _default_store_path() / "models",
        description="provisioned FunASR/ONNX model folders (scripts/fetch-models); asr.model may name one",
    )
    batch_seconds: float = Field(60.0, gt=0, le=3600, description="funasr/onnx: audio seconds per batch")
    use_itn: bool = Field(True, description="SenseVoice: its own punctuation and ITN (withitn)")
    punc_model: str = Field("", description="funasr: a CT-Punc folder, for models that write no punctuation")
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)

    @model_validator(mode="after")
    def _remote_url(self) -> AsrSettings:
        if self.engine == "remote" and not self.remote.url:
            raise ValueError("asr.remote.url is required with asr.engine = 'remote'")
        return self

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        v = v.strip().lower()
        if v != "auto" and not re.fullmatch(r"[a-z]{2,3}", v):
            raise ValueError("must be 'auto' or a language code such as 'zh' or 'en'")
        return v


class TextSettings(Section):
    chinese_script: Literal["simplified", "traditional", "as_is"] = "simplified"
    itn: bool = Field(True, description="spoken numbers, dates, money ... to written form (zh, en)")
    fullwidth_punctuation: bool = Field(True, description="Chinese text gets ，。？！ instead of ,.?!")
    hotwords: tuple[str, ...] = Field((), description="terms to spell right, for every session")
    hotwords_file: Path | None = Field(None, description="more terms, one a line (# comments)")
    hotword_biasing: bool = Field(True, description="layer 1: pass the terms to the engine (prompt, SeACo)")
    hotword_correction: bool = Field(True, description="layer 2: replace near-misses by pinyin/phonetic match")
    hotword_threshold: float = Field(0.8, ge=0.5, le=1.0, description="similarity a near-miss needs")

    @field_validator("hotwords")
    @classmethod
    def _terms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for t in v:
            if not t.strip() or len(t) > 64:
                raise ValueError("each hotword must be 1-64 characters")
        return tuple(t.strip() for t in v)

    @field_validator("hotwords_file")
    @classmethod
    def _file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a readable file")
        return v

    def terms(self) -> tuple[str, ...]:
        """The box's hotwords: the inline list plus the file's lines."""
        from daemon.text.hotwords import load_terms

        try:
            return load_terms(self.hotwords, str(self.hotwords_file) if self.hotwords_file else None)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"text.hotwords_file: cannot read {self.hotwords_file}: {exc}") from None


class VadSettings(Section):
    engine: Literal["silero", "fsmn"] = Field("silero", description="fsmn: FunASR's FSMN-VAD on onnxruntime")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="default 0.5 (silero), 0.7 (fsmn)")
    min_speech_ms: int = Field(250, ge=0, le=10_000)
    min_silence_ms: int = Field(600, ge=50, le=10_000, description="end-of-speech silence")
    pre_roll_ms: int = Field(300, ge=0, le=2_000)
    post_roll_ms: int = Field(200, ge=0, le=2_000)

    @model_validator(mode="before")
    @classmethod
    def _engine_threshold(cls, data: Any) -> Any:
        # FSMN's silence posterior sits near 0.5 on quiet room noise before it adapts: its own default is 0.7
        if isinstance(data, dict) and data.get("engine") == "fsmn" and "threshold" not in data:
            return {**data, "threshold": 0.7}
        return data

    max_utterance_s: float = Field(25.0, ge=2.0, le=30.0)


class StoreSettings(Section):
    path: Path = Field(default_factory=_default_store_path)
    retention_days: int = Field(0, ge=0, description="audio older than this is deleted; 0 = keep forever")
    max_audio_gb: float = Field(0.0, ge=0.0, description="oldest audio deleted above this; 0 = no quota")
    prune_records: bool = Field(False, description="delete the record with its audio (default: keep the text)")
    min_free_mb: int = Field(500, ge=0, description="below this free space, utterance audio is not archived")


class AudioSettings(Section):
    device: str = Field("", description="microphone by exact name, substring or index; empty = default")
    source: str = Field("", description="empty = microphone, or a file played as a microphone")


class MqttSettings(Section):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = "asrbox"
    device_id: str = Field(default_factory=default_device_id)
    username: str = ""
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = Field(30, ge=5, le=3600)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v

    @field_validator("device_id", "prefix")
    @classmethod
    def _topic_level(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", v):
            raise ValueError("must be one MQTT topic level of letters, digits, '_' or '-'")
        return v

    def check_files(self) -> None:
        """TLS files and the password file must exist and be readable (config check, start-up)."""
        for key in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, key)
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigError(f"config error: mqtt.{key}: cannot read {path}")
        if self.tls_key and not self.tls_cert:
            raise ConfigError("config error: mqtt.tls_key: given without mqtt.tls_cert")
        self._load_tls()
        self.password()

    def _load_tls(self) -> None:
        """Load the TLS files as the client will: a CA file that is not a certificate fails here, not at connect."""
        import ssl

        ctx = ssl.create_default_context()
        key, what = "tls_ca", "a CA certificate (PEM)"
        try:
            if self.tls_ca is not None:
                ctx.load_verify_locations(cafile=str(self.tls_ca))
            key, what = "tls_cert", "a certificate with its private key (PEM)"
            if self.tls_cert is not None:
                ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key) if self.tls_key else None)
        except (ssl.SSLError, OSError, ValueError) as exc:
            why = getattr(exc, "reason", None)
            shown = f"{getattr(self, key)} is not {what}" + (f" ({why})" if why else "")
            raise ConfigError(f"config error: mqtt.{key}: {shown}") from None

    def password(self) -> SecretStr | None:
        """The broker password: `password_file`, else the systemd credential `mqtt_password`."""
        path = self.password_file
        if path is None:
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if creds and (Path(creds) / "mqtt_password").is_file():
                path = Path(creds) / "mqtt_password"
        if path is None:
            return None
        try:
            return SecretStr(path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {path}: {exc.strerror}") from None


class SessionSettings(Section):
    listen_on_start: bool = True


class HomeAssistantSettings(Section):
    enabled: bool = False
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field("", max_length=100, description="device name in Home Assistant; default 'asrbox <id>'")


class HermesSettings(Section):
    enabled: bool = False
    site_id: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")


class PronunciationSettings(Section):
    enabled: bool = False


class GpioSettings(Section):
    enabled: bool = False
    chip: str = "/dev/gpiochip0"
    button_line: int | None = Field(None, ge=0, description="offset of the button's line on the chip")
    led_line: int | None = Field(None, ge=0, description="offset of the LED's line on the chip")
    button_active_low: bool = True  # a button to ground with the internal pull-up
    debounce_ms: int = Field(30, ge=1, le=1000)
    long_press_ms: int = Field(2000, ge=200, le=30000)
    long_press: Literal["none", "new_session"] = "new_session"


class CaptionsSettings(Section):
    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    websocket_url: str = Field("", description="the broker's MQTT-over-WebSockets URL the page connects to")


class HttpSettings(Section):
    enabled: bool = False
    bind: str = Field("127.0.0.1", description="open without a login only on loopback; otherwise a password / API keys")
    port: int = Field(8000, ge=1, le=65535)
    tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS (browser microphones need it)")
    tls_key: Path | None = None
    max_upload_mb: int = Field(4096, ge=1, description="largest single upload")
    password_file: Path | None = Field(
        None, description="argon2 hash of the admin password; default: the systemd credential or <config dir>/admin.pw"
    )


class WyomingSettings(Section):
    enabled: bool = Field(False, description="Wyoming speech-to-text server for Home Assistant Assist")
    bind: str = Field("127.0.0.1", description="0.0.0.0 for Home Assistant on another host (no login: LAN only)")
    port: int = Field(10300, ge=1, le=65535, description="10300: the Wyoming STT convention")
    zeroconf: bool = Field(False, description="announce _wyoming._tcp on the LAN (Home Assistant discovers it)")


class SpeakersSettings(Section):
    """Who said what (docs/speakers.md): CAM++ embeddings + pyannote segmentation on onnxruntime."""

    models_dir: Path | None = Field(
        None, description="the speaker models (asrbox models prepare-speakers); default <asr.models_dir>/speakers"
    )
    files: bool = Field(False, description="label speakers in every file transcription (else: --speakers / API)")
    live: Literal["auto", "on", "off"] = Field(
        "auto", description="label live finals; auto: when the models are present; on: refuse to start without"
    )
    split_turns: bool = Field(
        True, description="live: cut an utterance where another voice takes over without a pause (~1% of a core)"
    )
    threshold: float = Field(0.3, ge=-1.0, le=1.0, description="files: cosine similarity that joins two groups")
    live_threshold: float = Field(0.4, ge=-1.0, le=1.0, description="live: similarity to join a known speaker")
    voice_threshold: float = Field(0.5, ge=-1.0, le=1.0, description="similarity that names an enrolled voice")
    max_speakers: int = Field(8, ge=1, le=50, description="files: the most speakers an estimate may give")
    step_s: float = Field(10.0, ge=1.0, le=10.0, description="files: 10 s segmentation windows start this far apart")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime threads for the speaker models")

    def folder(self, asr: AsrSettings) -> Path:
        return self.models_dir or asr.models_dir / "speakers"


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASRBOX_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    asr: AsrSettings = Field(default_factory=AsrSettings)
    text: TextSettings = Field(default_factory=TextSettings)
    vad: VadSettings = Field(default_factory=VadSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings)
    hermes: HermesSettings = Field(default_factory=HermesSettings)
    pronunciation: PronunciationSettings = Field(default_factory=PronunciationSettings)
    gpio: GpioSettings = Field(default_factory=GpioSettings)
    captions: CaptionsSettings = Field(default_factory=CaptionsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)
    speakers: SpeakersSettings = Field(default_factory=SpeakersSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """`--config`, else `$ASRBOX_CONFIG`, else /etc/asrbox/asrbox.toml when it exists."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("ASRBOX_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(
    config: str | os.PathLike[str] | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> Settings:
    """Build the frozen settings, or raise ConfigError with one line naming the bad key."""
    path = resolve_config_path(config)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            import tomllib

            with path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None

    _check_env_keys()

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    clean = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in (overrides or {}).items()}
    try:
        kwargs: dict[str, Any] = {k: v for k, v in clean.items() if v}
        return _FileSettings(**kwargs)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None


def _check_env_keys() -> None:
    sections = set(Settings.model_fields)
    for name in os.environ:
        if name.startswith("ASRBOX_") and name != "ASRBOX_CONFIG" and not name.startswith("ASRBOX_TEST"):
            section = name[len("ASRBOX_") :].split("__")[0].lower()
            if section not in sections:
                raise ConfigError(f"config error: environment variable {name}: unknown section {section!r}")


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    where = f" in {path}" if path else ""
    value = err.get("input")
    shown = "" if err["type"] in ("extra_forbidden", "missing") or isinstance(value, dict) else f" (got {value!r})"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"config error{where}: {key}: {msg}{shown}{more}"


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Settings as plain data for `config show`; secrets are never read into it, file paths are shown."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    mqtt = data["mqtt"]
    mqtt["password"] = "********" if settings.mqtt.password_file else ""
    return data
