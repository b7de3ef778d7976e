"""Validation of incoming commands. A malformed command gets `ok: false` with a reason and changes nothing."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from daemon.mqtt.client import MAX_COMMAND_BYTES, Command
from daemon.mqtt.topics import COMMANDS

MAX_HOTWORDS = 500


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    request_id: str | int | None = None


class StartCmd(_Cmd):
    session_name: str | None = Field(None, max_length=200)
    language: str | None = Field(None, pattern=r"^(auto|[a-z]{2,3})$")


class StopCmd(_Cmd):
    pass


class PingCmd(_Cmd):
    pass


class HotwordsCmd(_Cmd):
    set: list[str] | None = Field(None, max_length=MAX_HOTWORDS)
    add: list[str] | None = Field(None, max_length=MAX_HOTWORDS)
    remove: list[str] | None = Field(None, max_length=MAX_HOTWORDS)

    @field_validator("set", "add", "remove")
    @classmethod
    def _words(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for w in v:
                if not w.strip() or len(w) > 100:
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

    @field_validator("target")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
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
        super().__init__(reason)
        self.request_id = request_id


def parse(cmd: Command) -> _Cmd:
    if cmd.name not in MODELS:
        raise CommandError(f"unknown command {cmd.name!r} (known: {', '.join(COMMANDS)})")
    if len(cmd.payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"payload too large ({len(cmd.payload)} bytes, at most {MAX_COMMAND_BYTES})")
    if not cmd.payload.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(cmd.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError("payload must be a JSON object")
    request_id = data.get("request_id")
    try:
        return MODELS[cmd.name].model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise CommandError(f"{where}: {msg}", request_id) from None
