"""Validation of incoming commands. A malformed command gets `ok: false` with a reason and changes nothing.

`parse` raises nothing but `CommandError`, whatever the payload bytes: JSON nested deeper than `MAX_DEPTH`, a
number too long to convert, a string the reply could not even be encoded with, all end in one line of reason.
Every text a command carries (hotwords, session name, practice sentence, learner, request id) is refused when it
holds a lone surrogate, a control character, a bidi control or a private-use character, and kept in NFC without
surrounding space.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from daemon.mqtt.client import MAX_COMMAND_BYTES, Command
from daemon.mqtt.topics import COMMANDS
from daemon.text.hotwords import clean_text, unsafe_character

log = logging.getLogger(__name__)

MAX_HOTWORDS = 500
MAX_DEPTH = 8  # no command needs more than 2 levels of nesting
MAX_REQUEST_ID = 200  # characters of a string request id
MAX_REASON = 300  # characters of a reason sent back


def _text(value: Any) -> Any:
    """A string, cleaned (see `clean_text`); anything else is left for the type check to refuse."""
    return clean_text(value) if isinstance(value, str) else value


def _texts(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_text(item))
        except ValueError as exc:
            raise ValueError(f"item {i} {exc}") from None
    return out


def _request_id(value: Any) -> bool:
    """A request id that can be echoed back: a clean short string, a 64-bit integer, or none."""
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_REQUEST_ID and unsafe_character(value) is None
    return type(value) is int and -(2**63) <= value < 2**63


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    request_id: str | int | None = None

    @field_validator("request_id", mode="before")
    @classmethod
    def _rid(cls, v: Any) -> Any:
        if not _request_id(v):
            raise ValueError(f"a string of at most {MAX_REQUEST_ID} plain characters or a 64-bit integer")
        return v


class StartCmd(_Cmd):
    session_name: str | None = Field(None, max_length=200)
    language: str | None = Field(None, pattern=r"^(auto|[a-z]{2,3})$")

    _clean = field_validator("session_name", mode="before")(_text)


class StopCmd(_Cmd):
    pass


class PingCmd(_Cmd):
    pass


class HotwordsCmd(_Cmd):
    set: list[str] | None = Field(None, max_length=MAX_HOTWORDS)
    add: list[str] | None = Field(None, max_length=MAX_HOTWORDS)
    remove: list[str] | None = Field(None, max_length=MAX_HOTWORDS)

    _clean = field_validator("set", "add", "remove", mode="before")(_texts)

    @field_validator("set", "add", "remove")
    @classmethod
    def _words(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for w in v:
                if not w or len(w) > 100:
                    raise ValueError("each hotword must be 1 to 100 characters")
        return v


class ListeningCmd(_Cmd):
    """Home Assistant's switch: `{"on": true}` starts listening (a session), `{"on": false}` stops it."""

    on: bool


class PronounceCmd(_Cmd):
    """Set the sentence the next utterances are scored against; `{"target": null}` ends practice."""

    target: str | None = Field(..., max_length=500)
    learner: str | None = Field(None, max_length=100)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")

    _clean = field_validator("target", "learner", mode="before")(_text)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is not None and not v:
            raise ValueError("target must not be empty (null ends practice)")
        return v


MODELS: dict[str, type[_Cmd]] = {
    "start": StartCmd,
    "stop": StopCmd,
    "ping": PingCmd,
    "hotwords": HotwordsCmd,
    "listening": ListeningCmd,
    "pronounce": PronounceCmd,
}
assert set(MODELS) == set(COMMANDS)


class CommandError(Exception):
    def __init__(self, reason: str, request_id: Any = None) -> None:
        super().__init__(_one_line(reason))
        self.request_id = request_id if _request_id(request_id) else None


def _one_line(reason: str) -> str:
    """A reason safe to publish and log: unsafe characters written as U+XXXX, one line, bounded."""
    line = re.sub(r"\s+", " ", reason[: MAX_REASON * 2])
    line = "".join(f"U+{ord(c):04X}" if unsafe_character(c) else c for c in line)
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _nesting(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if m.group(0) in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _load(payload: bytes) -> Any:
    if not payload.strip():
        return {}
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"payload is not JSON: not UTF-8 (byte {exc.start})") from None
    if _nesting(text) > MAX_DEPTH:
        raise CommandError(f"payload is nested too deep (at most {MAX_DEPTH} levels)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"payload is not JSON: {exc}") from None
    except ValueError:  # int conversion limit: a number thousands of digits long
        raise CommandError("payload is not JSON that fits: a number is too long") from None


def parse(cmd: Command) -> _Cmd:
    """The command's validated model; `CommandError` (a one-line reason) for anything else, never another error."""
    try:
        return _parse(cmd)
    except CommandError:
        raise
    except Exception as exc:  # any: a hostile payload must get a reply, not a dead command path
        log.debug("command %r not understood", cmd.name, exc_info=True)
        raise CommandError(f"payload not understood ({type(exc).__name__})") from None


def _parse(cmd: Command) -> _Cmd:
    if cmd.name not in MODELS:
        raise CommandError(f"unknown command {cmd.name!r} (known: {', '.join(COMMANDS)})")
    if len(cmd.payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"payload too large ({len(cmd.payload)} bytes, at most {MAX_COMMAND_BYTES})")
    data = _load(cmd.payload)
    if not isinstance(data, dict):
        raise CommandError("payload must be a JSON object")
    request_id = data.get("request_id")
    for key in data:
        if (bad := unsafe_character(key)) is not None:
            raise CommandError(f"a field name contains {bad}", request_id)
    try:
        return MODELS[cmd.name].model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p)[:40] for p in err["loc"]) or "payload"
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            msg = err["msg"]
        raise CommandError(f"{where}: {msg}", request_id) from None
