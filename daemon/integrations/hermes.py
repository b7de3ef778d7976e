"""Rhasspy Hermes bridge: asrbox acts as the ASR service of one Hermes site.

Honoured for the configured siteId: `hermes/asr/startListening` (starts listening; with `stopOnSilence`,
the default, listening stops after the first utterance), `hermes/asr/stopListening`, `hermes/asr/toggleOff`
(ignore startListening until `toggleOn`) and `hermes/asr/toggleOn`. Every final while the bridge is on is
published as `hermes/asr/textCaptured`; failures go to `hermes/error/asr`. Messages for other sites and
malformed ones are ignored (logged), as Hermes services do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "hermes/asr/"
TOPICS = ("startListening", "stopListening", "toggleOn", "toggleOff")
TEXT_CAPTURED = "hermes/asr/textCaptured"
ERROR = "hermes/error/asr"


@dataclass(frozen=True)
class HermesRequest:
    action: str  # one of TOPICS
    session_id: str | None
    stop_on_silence: bool


def parse(topic: str, payload: bytes, site_id: str) -> HermesRequest | None:
    """The request if it is well-formed and for our site, else None."""
    action = topic.removeprefix(PREFIX)
    if not topic.startswith(PREFIX) or action not in TOPICS:
        return None
    try:
        body = json.loads(payload.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.info("hermes: ignoring malformed %s", topic)
        return None
    if not isinstance(body, dict) or body.get("siteId", "default") != site_id:
        return None
    sid = body.get("sessionId")
    return HermesRequest(action, sid if isinstance(sid, str) else None, body.get("stopOnSilence", True) is not False)


def text_captured(text: str, seconds: float, site_id: str, session_id: str | None, likelihood: float) -> dict[str, Any]:
    return {
        "text": text,
        "likelihood": round(likelihood, 3),
        "seconds": round(seconds, 3),
        "siteId": site_id,
        "sessionId": session_id,
        "wakewordId": None,
        "asrTokens": None,
        "lang": None,
    }


def error(message: str, context: str, site_id: str, session_id: str | None) -> dict[str, Any]:
    return {"error": message, "context": context, "siteId": site_id, "sessionId": session_id}


class HermesBridge:
    """State of the bridge; the app calls it from its main thread only."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self.enabled = True
        self.session_id: str | None = None
        self.stop_after_final = False

    def handle(self, req: HermesRequest) -> str | None:
        """-> 'start', 'stop' or None: what the app should do with listening."""
        if req.action == "toggleOff":
            self.enabled = False
            return "stop"
        if req.action == "toggleOn":
            self.enabled = True
            return None
        if req.action == "startListening":
            if not self.enabled:
                log.info("hermes: startListening ignored while toggled off")
                return None
            self.session_id = req.session_id
            self.stop_after_final = req.stop_on_silence
            return "start"
        self.stop_after_final = False
        return "stop"  # stopListening
