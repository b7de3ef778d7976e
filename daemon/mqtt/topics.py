"""Every MQTT topic string of the contract lives here (see docs/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = ("start", "stop", "hotwords", "ping", "listening", "pronounce")


@dataclass(frozen=True)
class Topics:
    prefix: str
    device_id: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def state(self) -> str:
        return f"{self.root}/state"

    @property
    def speech(self) -> str:
        return f"{self.root}/speech"

    @property
    def partial(self) -> str:
        return f"{self.root}/transcript/partial"

    @property
    def final(self) -> str:
        return f"{self.root}/transcript/final"

    @property
    def session(self) -> str:
        return f"{self.root}/session"

    @property
    def error(self) -> str:
        return f"{self.root}/error"

    @property
    def diagnostics(self) -> str:
        return f"{self.root}/diagnostics"

    @property
    def pronunciation(self) -> str:
        return f"{self.root}/pronunciation"

    @property
    def commands(self) -> str:
        """Subscription filter for every command."""
        return f"{self.root}/cmd/+"

    def command(self, name: str) -> str:
        return f"{self.root}/cmd/{name}"

    def result(self, name: str) -> str:
        return f"{self.root}/cmd/{name}/result"

    def command_name(self, topic: str) -> str | None:
        head = f"{self.root}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None
