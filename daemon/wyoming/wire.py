"""Wyoming events off the wire, within limits: a JSON header line, optional extra data, an optional payload.

The `wyoming` library's reader trusts the lengths a client announces; a daemon cannot (a header claiming a
gigabyte of payload would be buffered whole). Writing uses the library's own writer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event, async_write_event

MAX_LINE = 64 * 1024  # the JSON header line
MAX_DATA = 64 * 1024  # extra data after the header
MAX_PAYLOAD = 1024 * 1024  # one audio chunk (Home Assistant sends 2 KiB)


class WireError(Exception):
    """The client sent something that is not a Wyoming event within our limits: answer and hang up."""

    def __init__(self, message: str, code: str = "bad_event") -> None:
        super().__init__(message)
        self.code = code


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event, or None when the client has gone (end of stream, reset, or cut mid-event)."""
    try:
        line = await reader.readline()
        if not line:
            return None
        header = _header(line)
        data = dict(header.get("data") or {})
        size = _length(header, "data_length", MAX_DATA)
        if size:
            data.update(_object(await reader.readexactly(size), "data"))
        size = _length(header, "payload_length", MAX_PAYLOAD)
        payload = await reader.readexactly(size) if size else None
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    except ValueError as exc:  # StreamReader: a line longer than its limit
        raise WireError(f"header line longer than {MAX_LINE} bytes", "too_large") from exc
    return Event(type=header["type"], data=data, payload=payload)


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WireError(f"event {what} is not JSON") from None
    except RecursionError:  # "[[[[...]]]]" nested deeper than the decoder goes, well within MAX_LINE
        raise WireError(f"event {what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise WireError(f"event {what} is not a JSON object")
    return value


def _header(line: bytes) -> dict[str, Any]:
    header = _object(line, "header")
    if not isinstance(header.get("type"), str) or not header["type"]:
        raise WireError("event without a type")
    if not isinstance(header.get("data") or {}, dict):
        raise WireError("event data is not a JSON object")
    return header


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireError(f"{key} is not a byte count")
    if value > limit:
        raise WireError(f"{key} {value} is over the limit of {limit} bytes", "too_large")
    return value


async def write_event(event: Event, writer: asyncio.StreamWriter) -> None:
    await async_write_event(event, writer)
