"""`asrbox watch`: a small subscriber that prints finals (and optionally partials) as they arrive."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from daemon.mqtt.client import apply_credentials
from daemon.mqtt.topics import Topics
from daemon.settings import Settings


def watch(settings: Settings, show_partials: bool = False) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    s = settings.mqtt
    topics = Topics(s.prefix, s.device_id)
    s.check_files()  # unreadable or wrong TLS and password files: one line, as `asrbox run` says it
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    apply_credentials(client, s)
    tty = sys.stdout.isatty()

    def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
        subs = [topics.final, topics.state, topics.error] + ([topics.partial] if show_partials else [])
        for t in subs:
            c.subscribe(t, qos=1)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic == topics.final:
            who = body.get("speaker_name") or body.get("speaker")
            said = f"{who}: {body.get('text')}" if who else body.get("text")
            line = f"[{body.get('seq')}] ({body.get('language')}, {body.get('latency_ms')} ms) {said}"
            print(("\r\033[K" if tty else "") + line, flush=True)
        elif msg.topic == topics.partial and tty:
            print(f"\r\033[K… {body.get('text', '')[-100:]}", end="", flush=True)
        elif msg.topic == topics.state:
            print(f"\r-- state: {body.get('state')} {body.get('reason') or ''}", flush=True)
        elif msg.topic == topics.error:
            print(f"\r-- error: {body.get('message')}", flush=True)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_async(s.host, s.port)
    client.loop_start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
    return 0
