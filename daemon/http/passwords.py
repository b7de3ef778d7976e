"""The admin password: an argon2 hash in a file, never the password itself.

Where the hash is read from (first that applies): `[http] password_file`; the systemd credential
`$CREDENTIALS_DIRECTORY/asrbox-admin`; `<config dir>/admin.pw` (the folder of the TOML config, by default
/etc/asrbox). `asrbox passwd` writes the first or the last of these (a credential is read-only), mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from daemon.errors import AsrboxError
from daemon.settings import DEFAULT_CONFIG_PATH, Settings

CREDENTIAL = "asrbox-admin"
FILE_NAME = "admin.pw"
MIN_LENGTH = 8
MAX_LENGTH = 1024

_hasher = PasswordHasher()


def credential_path() -> Path | None:
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    path = Path(folder) / CREDENTIAL
    return path if path.is_file() else None


def password_path(settings: Settings, config: Path | None) -> Path:
    """The file the daemon reads the hash from (it may not exist yet: no password set)."""
    if settings.http.password_file is not None:
        return settings.http.password_file
    cred = credential_path()
    if cred is not None:
        return cred
    return (config.parent if config is not None else DEFAULT_CONFIG_PATH.parent) / FILE_NAME


def writable_path(settings: Settings, config: Path | None) -> Path:
    """Where `asrbox passwd` writes: the configured file, else <config dir>/admin.pw (never the credential)."""
    if settings.http.password_file is not None:
        return settings.http.password_file
    return (config.parent if config is not None else DEFAULT_CONFIG_PATH.parent) / FILE_NAME


def check_new(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise AsrboxError(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise AsrboxError(f"the password must have at most {MAX_LENGTH} characters")


def write_hash(path: Path, password: str) -> None:
    """Hash and store `password` (0600, replaced atomically)."""
    check_new(password)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(_hasher.hash(password) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AsrboxError(f"cannot write the password file {path}: {exc.strerror or exc}") from None


def read_hash(path: Path) -> str | None:
    """The stored hash, or None when no password is set (no file, empty, or unreadable)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.startswith("$argon2") else None


def verify(stored: str, password: str) -> bool:
    """Blocking (argon2 takes tens of ms by design): call it off the loop."""
    if not password or len(password) > MAX_LENGTH:
        return False
    try:
        return bool(_hasher.verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False
