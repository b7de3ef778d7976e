"""Durable transcription jobs (to be written): queued in SQLite, run one file at a time on a job thread through
the shared engine, resumed after a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.core.app import App


class JobRunner:
    def __init__(self, app: App) -> None:
        self.app = app

    def start(self) -> None:
        """Resume queued and interrupted jobs."""

    async def stop(self) -> None:
        """Stop taking new files; the file in hand stays queued for the next start."""
