from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import asrbox
from pydantic import ValidationError

from daemon.errors import ConfigError
from daemon.settings import load_settings, masked_dump


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "asrbox.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(__import__("os").environ):
        if k.startswith("ASRBOX_"):
            monkeypatch.delenv(k)
    s = load_settings(None)
    assert s.asr.engine == "whisper" and s.asr.device == "auto" and s.mqtt.prefix == "asrbox"
    with pytest.raises(ValidationError):
        s.asr.batch_size = 3  # type: ignore[misc]


def test_toml_env_and_overrides_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, '[asr]\nbatch_size = 6\nlanguage = "en"\n[mqtt]\nport = 1884\n')
    monkeypatch.setenv("ASRBOX_MQTT__PORT", "1999")
    s = load_settings(cfg, {"asr": {"language": "zh", "device": None}})
    assert s.asr.batch_size == 6  # file (the default is 4)
    assert s.mqtt.port == 1999  # env beats file
    assert s.asr.language == "zh"  # CLI beats both


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[asr]\nbatch_size = 'many'\n", "asr.batch_size"),
        ("[asr]\nbogus = 1\n", "asr.bogus: unknown key"),
        ("[nosuchsection]\nx = 1\n", "nosuchsection: unknown key"),
        ("[mqtt]\nport = 70000\n", "mqtt.port"),
        ("[mqtt]\ndevice_id = 'a/b'\n", "mqtt.device_id"),
        ("[asr]\nlanguage = 'english!'\n", "asr.language"),
        ("[asr]\ndevice = 'tpu'\n", "asr.device"),
        ("[asr\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, toml: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, toml))
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_env_key_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASRBOX_ASR__BOGUS", "1")
    with pytest.raises(ConfigError, match=r"asr\.bogus"):
        load_settings(None)
    monkeypatch.delenv("ASRBOX_ASR__BOGUS")
    monkeypatch.setenv("ASRBOX_NOPE", "1")
    with pytest.raises(ConfigError, match="ASRBOX_NOPE"):
        load_settings(None)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_secret_read_from_file_and_masked(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    s = load_settings(write(tmp_path, f'[mqtt]\nusername = "box"\npassword_file = "{secret}"\n'))
    pw = s.mqtt.password()
    assert pw is not None and pw.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in json.dumps(masked_dump(s))
    assert masked_dump(s)["mqtt"]["password"] == "********"


def test_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mqtt_password").write_text("s3cret")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    pw = load_settings(None).mqtt.password()
    assert pw is not None and pw.get_secret_value() == "s3cret"


def test_cli_bad_config_exits_78(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write(tmp_path, "[asr]\nbatch_size = 0\n")
    r = asrbox("--config", str(cfg), "config", "check", env=env)
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "asr.batch_size" in lines[0]
    # the same through the environment
    r = asrbox("config", "check", env={**env, "ASRBOX_MQTT__PORT": "x"})
    assert r.returncode == 78 and "mqtt.port" in r.stderr


def test_cli_config_show_masks_secret(tmp_path: Path, env: dict[str, str]) -> None:
    secret = tmp_path / "pw"
    secret.write_text("topsecret")
    cfg = write(tmp_path, f'[mqtt]\npassword_file = "{secret}"\n')
    r = asrbox("--config", str(cfg), "config", "show", env=env)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["mqtt"]["password"] == "********"
    assert "topsecret" not in r.stdout + r.stderr
    r = asrbox("--config", str(cfg), "config", "check", env=env)
    assert r.returncode == 0 and "ok" in r.stderr


def test_example_config_is_valid(env: dict[str, str]) -> None:
    from conftest import ROOT

    r = asrbox("--config", str(ROOT / "config" / "asrbox.toml"), "config", "check", env=env)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[mqtt]\npassword_file = "/nonexistent/pw"\n', "mqtt.password_file"),
        ('[mqtt]\ntls_ca = "/nonexistent/ca.crt"\n', "mqtt.tls_ca"),
        ('[mqtt]\ntls_key = "/etc/hostname"\n', "mqtt.tls_key"),
    ],
)
def test_cli_unreadable_secret_and_tls_paths_exit_78(
    tmp_path: Path, env: dict[str, str], body: str, needle: str
) -> None:
    r = asrbox("--config", str(write(tmp_path, body)), "config", "check", env=env)
    assert r.returncode == 78 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_config_option_after_nested_commands(tmp_path: Path, env: dict[str, str]) -> None:
    """`--config` works after any command name, nested ones too (`asrbox config check --config FILE`)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[vad]\nthreshold = 7\n")
    for args in (("config", "check"), ("history", "list"), ("models", "list"), ("pronounce", "export")):
        r = asrbox(*args, "--config", str(bad), env=env)
        assert r.returncode == 78 and "vad.threshold" in r.stderr, (args, r.stderr)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real self-signed certificate and its key (openssl), as a broker's CA would be."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "ca.crt", d / "ca.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=asrbox-test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_cli_tls_ca_must_be_a_certificate(tmp_path: Path, env: dict[str, str], tls_pair: tuple[Path, Path]) -> None:
    cert, key = tls_pair
    not_cert = tmp_path / "ca.crt"
    not_cert.write_text("this is not a certificate\n")
    r = asrbox("--config", str(write(tmp_path, f'[mqtt]\ntls_ca = "{not_cert}"\n')), "config", "check", env=env)
    assert r.returncode == 78
    assert r.stderr.splitlines() == [
        f"asrbox: config error: mqtt.tls_ca: {not_cert} is not a CA certificate (PEM) (NO_CERTIFICATE_OR_CRL_FOUND)"
    ]
    r = asrbox("--config", str(write(tmp_path, f'[mqtt]\ntls_ca = "{key}"\n')), "config", "check", env=env)
    assert r.returncode == 78 and "mqtt.tls_ca" in r.stderr and len(r.stderr.splitlines()) == 1
    good = f'[mqtt]\ntls_ca = "{cert}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    r = asrbox("--config", str(write(tmp_path, good)), "config", "check", env=env)
    assert r.returncode == 0, r.stderr
    swapped = f'[mqtt]\ntls_ca = "{cert}"\ntls_cert = "{key}"\ntls_key = "{cert}"\n'
    r = asrbox("--config", str(write(tmp_path, swapped)), "config", "check", env=env)
    assert r.returncode == 78 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"asrbox: config error: mqtt.tls_cert: {key} is not a certificate with its private key")


@pytest.mark.parametrize(
    "argv",
    [["config", "show"], ["history", "list"], ["transcribe", "/nonexistent/a.wav", "--language", "en"]],
    ids=["config", "history", "transcribe"],
)
def test_cli_loads_settings_once(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import daemon.cli

    for k in list(__import__("os").environ):
        if k.startswith("ASRBOX_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("ASRBOX_STORE__PATH", str(tmp_path / "store"))
    calls: list[dict[str, Any]] = []

    def counting(config: Any = None, overrides: Any = None) -> Any:
        calls.append(overrides or {})
        return load_settings(config, overrides)

    monkeypatch.setattr(daemon.cli, "load_settings", counting)
    daemon.cli.main(argv)
    assert len(calls) == 1
    if argv[0] == "transcribe":
        assert calls[0]["asr"]["language"] == "en"  # the command's overrides are in that one load
    capsys.readouterr()
