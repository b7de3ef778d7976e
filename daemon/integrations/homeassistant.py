"""Home Assistant MQTT discovery, device-based: one retained config message describes the box and its entities.

Entities read the topics the daemon publishes anyway (docs/mqtt.md); nothing extra is sent for them:
a transcript event and a last-transcript sensor (state cut to 255 characters, the full text in attributes)
from `transcript/final`, a listening switch from `state` (commands to `cmd/listening`), a speech binary
sensor from `speech`, and diagnostic sensors (backlog, free disk, latency) from `diagnostics`. Availability
is our `status` (online/offline, last will). The config is published on connect and again whenever Home
Assistant announces itself `online` on `<discovery_prefix>/status` (after its restart).
"""

from __future__ import annotations

from typing import Any

from daemon import __version__
from daemon.mqtt.topics import Topics

STATE_MAX = 255  # Home Assistant rejects longer entity states


def discovery_topic(discovery_prefix: str, device_id: str) -> str:
    return f"{discovery_prefix}/device/asrbox_{device_id}/config"


def discovery_config(topics: Topics, name: str = "") -> dict[str, Any]:
    uid = f"asrbox_{topics.device_id}"
    final = topics.final
    diag = topics.diagnostics

    def diagnostic(key: str, label: str, field: str, unit: str | None, device_class: str | None) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "p": "sensor",
            "unique_id": f"{uid}_{key}",
            "name": label,
            "state_topic": diag,
            "value_template": f"{{{{ value_json.{field} }}}}",
            "entity_category": "diagnostic",
            "state_class": "measurement",
        }
        if unit:
            cfg["unit_of_measurement"] = unit
        if device_class:
            cfg["device_class"] = device_class
        return cfg

    return {
        "dev": {
            "ids": [uid],
            "name": name or f"asrbox {topics.device_id}",
            "mf": "asrbox",
            "mdl": "offline speech-to-text box",
            "sw": __version__,
        },
        "o": {"name": "asrbox", "sw": __version__},
        "avty": [{"t": topics.status, "pl_avail": "online", "pl_not_avail": "offline"}],
        "qos": 1,
        "cmps": {
            "transcript": {
                "p": "event",
                "unique_id": f"{uid}_transcript",
                "name": "Transcript",
                "state_topic": final,
                "event_types": ["transcript"],
                "value_template": (
                    "{{ {'event_type': 'transcript', 'text': value_json.text, 'language': value_json.language,"
                    " 'session_id': value_json.session_id, 'utterance_id': value_json.utterance_id} | tojson }}"
                ),
                "icon": "mdi:message-text",
            },
            "last_transcript": {
                "p": "sensor",
                "unique_id": f"{uid}_last_transcript",
                "name": "Last transcript",
                "state_topic": final,
                "value_template": f"{{{{ value_json.text[:{STATE_MAX}] }}}}",
                "json_attributes_topic": final,
                "json_attributes_template": (
                    "{{ {'text': value_json.text, 'raw_text': value_json.raw_text, 'language': value_json.language,"
                    " 'session_id': value_json.session_id, 'ended_at': value_json.ended_at} | tojson }}"
                ),
                "icon": "mdi:text",
            },
            "listening": {
                "p": "switch",
                "unique_id": f"{uid}_listening",
                "name": "Listening",
                "state_topic": topics.state,
                "value_template": "{{ 'ON' if value_json.state == 'listening' else 'OFF' }}",
                "command_topic": topics.command("listening"),
                "payload_on": '{"on": true}',
                "payload_off": '{"on": false}',
                "state_on": "ON",
                "state_off": "OFF",
                "icon": "mdi:microphone",
            },
            "speech": {
                "p": "binary_sensor",
                "unique_id": f"{uid}_speech",
                "name": "Speech",
                "state_topic": topics.speech,
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "sound",
            },
            "backlog": diagnostic("backlog", "Backlog", "backlog", None, None),
            "disk_free": diagnostic("disk_free", "Disk free", "disk_free_mb", "MB", "data_size"),
            "latency": diagnostic("latency", "Latency", "latency_ms_p50", "ms", "duration"),
        },
    }
