"""The optional integrations in one place, so the app has a single seam for them.

The core calls in, on its event loop: `start()` after MQTT is set up, `on_connect()`, `on_final()`,
`on_state()`, `on_failure()`, `stop()`. Integrations act on the daemon only through `Controls`, and only on
the loop (`submit` queues the action there, in order with commands), so sessions are never started from
paho's or a GPIO thread. They hold no state the core needs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from daemon.integrations import hermes
from daemon.integrations.homeassistant import discovery_config, discovery_topic
from daemon.mqtt.client import MqttClient
from daemon.mqtt.topics import Topics
from daemon.pronounce.score import score
from daemon.settings import Settings
from daemon.store.db import Store

log = logging.getLogger(__name__)


class Controls(Protocol):
    def submit(self, action: Callable[[], object]) -> None: ...
    def start_listening(self) -> Awaitable[None]: ...
    def stop_listening(self) -> Awaitable[None]: ...
    def toggle_listening(self) -> Awaitable[None]: ...
    def new_session(self) -> Awaitable[None]: ...
    @property
    def session_id(self) -> str | None: ...


class Integrations:
    def __init__(self, settings: Settings, topics: Topics, client: MqttClient, store: Store, controls: Controls):
        self.settings = settings
        self.topics = topics
        self.client = client
        self.store = store
        self.controls = controls
        self.hermes = hermes.HermesBridge(settings.hermes.site_id) if settings.hermes.enabled else None
        self.target: str | None = None
        self.learner: str | None = None
        self.target_language: str | None = None
        self.gpio: Any = None
        self.captions: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        s = self.settings
        if s.homeassistant.enabled:
            self.client.route(f"{s.homeassistant.discovery_prefix}/status", self._ha_status)
        if self.hermes is not None:
            self.client.route(hermes.PREFIX + "+", self._hermes_message)
        if s.gpio.enabled:
            from daemon.gpio.control import start_gpio

            self.gpio = start_gpio(s.gpio, self.controls)
        if s.captions.enabled:
            from daemon.web.server import CaptionServer

            self.captions = CaptionServer(s.captions, s.mqtt)
            self.captions.start()

    def stop(self) -> None:
        if self.gpio is not None:
            self.gpio.close()
        if self.captions is not None:
            self.captions.stop()

    # ------------------------------------------------------------------ events from the app
    def on_connect(self) -> None:
        if self.settings.homeassistant.enabled:
            self.publish_discovery()

    def on_state(self, state: str) -> None:
        if self.gpio is not None:
            self.gpio.show(state)

    def on_failure(self, code: str, message: str) -> None:
        if self.hermes is not None:
            body = hermes.error(message, code, self.hermes.site_id, self.hermes.session_id)
            self.client.publish(hermes.ERROR, json.dumps(body, ensure_ascii=False), qos=1)

    def on_final(self, text: str, language: str, duration_s: float, record_id: str, likelihood: float) -> None:
        """On the loop: Hermes textCaptured and pronunciation scoring for a final."""
        h = self.hermes
        if h is not None and h.enabled:
            body = hermes.text_captured(text, duration_s, h.site_id, h.session_id, likelihood)
            self.client.publish(hermes.TEXT_CAPTURED, json.dumps(body, ensure_ascii=False), qos=1)
            if h.stop_after_final:
                h.stop_after_final = False
                self.controls.submit(self.controls.stop_listening)
        target = self.target
        if target is not None and text.strip():
            result = score(target, text, self.target_language or language).as_dict()
            result["learner"] = self.learner
            result["session_id"] = self.controls.session_id
            result["utterance_id"] = record_id
            try:
                result["attempt_id"] = self.store.add_attempt(result, self.learner, self.controls.session_id, record_id)
            except Exception as exc:  # scoring still reaches the learner when the store is full
                log.error("cannot store the pronunciation attempt: %s", exc)
            self.client.publish(self.topics.pronunciation, json.dumps(result, ensure_ascii=False), qos=1)

    # ------------------------------------------------------------------ commands (on the loop)
    def set_target(self, target: str | None, learner: str | None, language: str | None) -> dict[str, Any]:
        if not self.settings.pronunciation.enabled:
            raise ValueError("pronunciation practice is off (pronunciation.enabled = false)")
        self.target = target.strip() if target else None
        self.learner, self.target_language = learner, language
        return {"target": self.target, "learner": learner}

    def publish_discovery(self) -> None:
        ha = self.settings.homeassistant
        body = json.dumps(discovery_config(self.topics, ha.name), ensure_ascii=False)
        self.client.publish(discovery_topic(ha.discovery_prefix, self.topics.device_id), body, qos=1, retain=True)
        log.info("Home Assistant discovery published")

    # ------------------------------------------------------------------ paho's thread: hand over only
    def _ha_status(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload.strip() == b"online":
            self.controls.submit(self.publish_discovery)

    def _hermes_message(self, topic: str, payload: bytes, retained: bool) -> None:
        assert self.hermes is not None
        if retained:
            return
        req = hermes.parse(topic, payload, self.hermes.site_id)
        if req is not None:
            self.controls.submit(lambda: self._hermes_request(req))

    def _hermes_request(self, req: hermes.HermesRequest) -> Awaitable[None] | None:
        assert self.hermes is not None
        action = self.hermes.handle(req)
        if action == "start":
            return self.controls.start_listening()
        if action == "stop":
            return self.controls.stop_listening()
        return None
