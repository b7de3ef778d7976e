"""Errors that reach the user as one clear line, each with its exit code."""

from __future__ import annotations

import os


class AsrboxError(Exception):
    """An error with a one-line message for the user and an exit code."""

    exit_code = 1


class ConfigError(AsrboxError):
    """Wrong configuration: the unit must not restart on it (RestartPreventExitStatus=78)."""

    exit_code = os.EX_CONFIG  # 78


class ModelError(AsrboxError):
    """A model is missing, incomplete or fails its checksum."""

    exit_code = 69  # EX_UNAVAILABLE


class AudioDecodeError(AsrboxError):
    """An input file is not audio we can read, or is empty."""

    exit_code = os.EX_DATAERR  # 65


class StoreError(AsrboxError):
    """The database or the audio archive cannot be written or read."""

    exit_code = 74  # EX_IOERR
