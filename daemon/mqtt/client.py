"""The MQTT port: paho-mqtt 2.x with birth/last will on `status`, TLS, credentials and a short reconnect delay.

paho runs its own network thread (`loop_start`); its callbacks only post values to the core's loop
(`MqttConnected`, `MqttDisconnected`, `MqttAcked`, `Command`) and never touch state. A QoS 1 message handed to
paho stays paho's until the broker acknowledges it (paho re-sends it itself after a reconnect), so the core
never publishes the same final twice: it waits for `MqttAcked(mid)`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.errors import ConfigError
from daemon.mqtt.topics import Topics
from daemon.settings import MqttSettings

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
# Reconnect at most this long after the broker is back (paho's own backoff grows to 30 s and more).
RECONNECT_DELAY_S = 1


@dataclass(frozen=True)
class Command:
    name: str
    payload: bytes
    retained: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


@dataclass(frozen=True)
class MqttConnected:
    pass


@dataclass(frozen=True)
class MqttDisconnected:
    reason: str


@dataclass(frozen=True)
class MqttAcked:
    mid: int
    refused: str | None = None  # MQTT 5: the broker's reason code when the PUBACK is a failure (ACL, quota)


class Publisher(Protocol):
    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> bool: ...

    def publish_tracked(self, topic: str, payload: str | bytes) -> int | None: ...


def apply_credentials(client: Any, settings: MqttSettings) -> bool:
    """The configured username/password and TLS files on a paho client (the daemon, `asrbox watch` and `asrbox
    doctor` connect alike); True when TLS is on. TLS files paho cannot load: ConfigError."""
    if settings.username:
        pw = settings.password()
        client.username_pw_set(settings.username, pw.get_secret_value() if pw else None)
    if not (settings.tls_ca or settings.tls_cert):
        return False
    try:
        client.tls_set(
            ca_certs=str(settings.tls_ca) if settings.tls_ca else None,
            certfile=str(settings.tls_cert) if settings.tls_cert else None,
            keyfile=str(settings.tls_key) if settings.tls_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"config error: mqtt.tls_*: cannot load TLS files: {exc}") from None
    return True


class MqttClient:
    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        post: Callable[[object], None],
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._mqtt = mqtt
        self.settings = settings
        self.topics = topics
        self._post = post
        self._connected = threading.Event()  # for the clean stop only; the core keeps its own view
        self._stopping = False
        self.v5 = settings.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"asrbox-{settings.device_id}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else True,
        )
        client.enable_logger(logging.getLogger("daemon.mqtt.paho"))
        client.will_set(topics.status, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=RECONNECT_DELAY_S, max_delay=RECONNECT_DELAY_S)
        client.max_queued_messages_set(1000)  # paho's own queue: bounded; QoS 0 extras are dropped
        apply_credentials(client, settings)
        self._routes: list[tuple[str, Callable[[str, bytes, bool], None]]] = []
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        self._client = client

    def route(self, topic_filter: str, handler: Callable[[str, bytes, bool], None]) -> None:
        """Subscribe to a topic outside our tree (Home Assistant, Hermes) on every connect; `handler(topic,
        payload, retained)` runs on paho's network thread, so it must only hand the message on."""
        self._routes.append((topic_filter, handler))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        s = self.settings
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive)
        self._client.loop_start()
        log.info("MQTT: connecting to %s:%d as %s (MQTT %s)", s.host, s.port, f"asrbox-{s.device_id}", s.protocol)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish `offline` ourselves (a clean stop is not a crash), then disconnect."""
        if self._connected.is_set():
            info = self._client.publish(self.topics.status, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._stopping = True
        self._client.disable_logger()  # paho logs a spurious error while its loop winds down
        self._client.disconnect()
        self._client.loop_stop()

    # ------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return bool(info.rc == self._mqtt.MQTT_ERR_SUCCESS)

    def publish_tracked(self, topic: str, payload: str | bytes) -> int | None:
        """QoS 1 publish whose acknowledgement comes back as `MqttAcked(mid)`: the message id, or None when paho
        did not take the message (its queue is full). A message paho took is never to be published again."""
        info = self._client.publish(topic, payload, qos=1, retain=False)
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            return None
        return int(info.mid)

    def reply(self, cmd: Command, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False)
        self.publish(self.topics.result(cmd.name), data, qos=1)
        if self.v5 and cmd.response_topic:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if cmd.correlation_data is not None:
                props.CorrelationData = cmd.correlation_data
            self._client.publish(cmd.response_topic, data, qos=1, properties=props)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _handle_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT: connection refused: %s", reason)
            return
        self._connected.set()
        log.info("MQTT: connected")
        client.publish(self.topics.status, "online", qos=1, retain=True)
        client.subscribe(self.topics.commands, qos=1)
        for topic_filter, _ in self._routes:
            client.subscribe(topic_filter, qos=1)
        self._post(MqttConnected())

    def _handle_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("MQTT: disconnected (%s); reconnecting", reason)
        self._connected.clear()
        self._post(MqttDisconnected(str(reason)))

    def _handle_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        failed = bool(getattr(reason, "is_failure", False))
        self._post(MqttAcked(int(mid), str(reason) if failed else None))

    def _handle_message(self, client: Any, userdata: Any, msg: Any) -> None:
        name = self.topics.command_name(msg.topic)
        if name is None:
            for topic_filter, handler in self._routes:
                if self._mqtt.topic_matches_sub(topic_filter, msg.topic):
                    try:
                        handler(msg.topic, bytes(msg.payload), bool(msg.retain))
                    except Exception as exc:  # a foreign message must not stop paho's thread
                        log.warning("MQTT: handler for %s failed: %s", topic_filter, exc)
            return
        props = getattr(msg, "properties", None)
        self._post(
            Command(
                name=name,
                payload=bytes(msg.payload),
                retained=bool(msg.retain),
                response_topic=getattr(props, "ResponseTopic", None) if props else None,
                correlation_data=getattr(props, "CorrelationData", None) if props else None,
            )
        )
