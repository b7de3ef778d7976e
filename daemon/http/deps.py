"""Small shared pieces of the HTTP adapter: the core, one-line errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

if TYPE_CHECKING:
    from daemon.core.app import App


def core(request: Request) -> App:
    """The daemon core this app serves (set by create_app)."""
    app: App = request.app.state.core
    return app


def refuse(status: int, message: str) -> HTTPException:
    """An HTTPException whose message reaches the client as `error.message` (one line, no traceback)."""
    return HTTPException(status_code=status, detail=message)
