"""Who may use the HTTP face: open on loopback; otherwise an API key or the console's session (+ CSRF token).

- `Authorization: Bearer <key>`: a key from `asrbox keys create` (stored hashed, daemon.store.keys).
- The console: `POST /api/login {"password"}` checks the admin password (argon2, daemon.http.passwords) and
  sets the cookie `asrbox_session`, signed with a per-box secret kept in the store (0600). The cookie carries a
  CSRF token; POST/PUT/PATCH/DELETE with the cookie must send it back as `X-CSRF-Token`. Changing the password
  ends every session (the cookie names the hash it was issued under).
- Failed logins are limited per client address (`LOGIN_FAILURES` a minute, then 429).

`require_auth` is the dependency create_app puts on every router but the open ones (this router's login and
logout, `/health`, the console's pages and static files). Its state (secret, limiter) is the adapter's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, Field

from daemon.http import passwords
from daemon.http.deps import refuse
from daemon.http.server import is_loopback
from daemon.store.keys import ApiKeys

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)

router = APIRouter(tags=["auth"])
bearer = HTTPBearer(auto_error=False, description="an API key from `asrbox keys create NAME`")

COOKIE = "asrbox_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_MAX_AGE_S = 7 * 24 * 3600
LOGIN_FAILURES = 5  # per client address ...
LOGIN_WINDOW_S = 60.0  # ... in this many seconds, then 429 until the oldest failure ages out
LIMITER_ADDRESSES = 10_000
SECRET_FILE = "http_secret"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class AuthState:
    open: bool
    bind: str
    password_file: Path
    signer: URLSafeTimedSerializer
    keys: ApiKeys
    secure_cookie: bool
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def password_hash(self) -> str | None:
        return passwords.read_hash(self.password_file)


def build_state(app: App) -> AuthState:
    s = app.settings
    pw = s.http.password_file or passwords.password_path(s, None)
    return AuthState(
        open=is_loopback(s.http.bind),
        bind=s.http.bind,
        password_file=pw,
        signer=URLSafeTimedSerializer(box_secret(app.store.root), salt="asrbox-session"),
        keys=ApiKeys(app.store),
        secure_cookie=s.http.tls_cert is not None,
    )


def box_secret(root: Path) -> bytes:
    """The per-box signing secret (created once, 0600, in the store folder)."""
    path = root / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        pass
    value = secrets.token_hex(32)
    tmp = path.with_name(f".{SECRET_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
    return bytes.fromhex(value)


def _state(request: Request) -> AuthState:
    st: AuthState = request.app.state.auth
    return st


def _pw_tag(stored: str) -> str:
    return hashlib.sha256(stored.encode("ascii")).hexdigest()[:16]


def _session(st: AuthState, request: Request) -> dict[str, Any] | None:
    """The signed session the cookie carries, if it is valid under the current password."""
    raw = request.cookies.get(COOKIE)
    stored = st.password_hash()
    if not raw or stored is None:
        return None
    try:
        data = st.signer.loads(raw, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("pw") != _pw_tag(stored) or not isinstance(data.get("csrf"), str):
        return None
    return data


def _challenge(message: str) -> HTTPException:
    """401 with `WWW-Authenticate: Bearer` (RFC 6750), which clients expect with it."""
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="asrbox"'})


def _unauthorized(st: AuthState) -> Exception:
    if st.password_hash() is None and not st.keys.any_active():
        return _challenge(
            f"this box listens on {st.bind} (not loopback) and has no admin password or API key yet: "
            "run `asrbox passwd` or `asrbox keys create NAME` on the box"
        )
    return _challenge("authentication required: send `Authorization: Bearer <API key>` or log in")


async def require_auth(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """'open', 'key' or 'session'; 401/403 otherwise. Put on every router that is not open."""
    st = _state(request)
    if st.open:
        kind = "open"
    elif credentials is not None:
        if st.keys.check(credentials.credentials) is None:
            raise _challenge("invalid or revoked API key")
        kind = "key"
    else:
        session = _session(st, request)
        if session is None:
            raise _unauthorized(st)
        if request.method in UNSAFE:
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), str(session["csrf"]).encode()):
                raise refuse(
                    403, f"missing or wrong {CSRF_HEADER} header (the `csrf` value from /api/login or /api/me)"
                )
        kind = "session"
        request.state.csrf = session["csrf"]
    request.state.auth = kind
    return kind


# ---------------------------------------------------------------------------- login rate limit
def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _recent_failures(st: AuthState, who: str, now: float) -> deque[float]:
    q = st.failures.setdefault(who, deque())
    while q and now - q[0] > LOGIN_WINDOW_S:
        q.popleft()
    return q


def _note_failure(st: AuthState, who: str, now: float) -> None:
    _recent_failures(st, who, now).append(now)
    if len(st.failures) > LIMITER_ADDRESSES:  # forget addresses with no recent failure
        for addr in [a for a, q in st.failures.items() if not q or now - q[-1] > LOGIN_WINDOW_S]:
            del st.failures[addr]


# ---------------------------------------------------------------------------- routes
class Login(BaseModel):
    password: str = Field(..., min_length=1, max_length=passwords.MAX_LENGTH)


@router.post("/api/login")
async def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
    """Check the admin password; set the session cookie; the CSRF token to send with unsafe methods."""
    st = _state(request)
    if st.open:
        return {"ok": True, "auth": "open", "csrf": None}
    who, now = _client(request), time.monotonic()
    recent = _recent_failures(st, who, now)
    if len(recent) >= LOGIN_FAILURES:
        wait = max(1, int(LOGIN_WINDOW_S - (now - recent[0])) + 1)
        raise refuse(429, f"too many failed logins from {who}: try again in {wait} s")
    stored = st.password_hash()
    if stored is None:
        raise refuse(401, "no admin password is set on this box: run `asrbox passwd` on the box")
    if not await asyncio.to_thread(passwords.verify, stored, body.password):
        _note_failure(st, who, time.monotonic())
        log.warning("failed login from %s", who)
        raise refuse(401, "wrong password")
    csrf = secrets.token_urlsafe(24)
    cookie = st.signer.dumps({"csrf": csrf, "pw": _pw_tag(stored)})
    response.set_cookie(
        COOKIE, cookie, max_age=SESSION_MAX_AGE_S, httponly=True, samesite="strict", secure=st.secure_cookie
    )
    log.info("console login from %s", who)
    return {"ok": True, "auth": "session", "csrf": csrf}


@router.post("/api/logout")
async def logout(response: Response) -> dict[str, Any]:
    response.delete_cookie(COOKIE)
    return {"ok": True}


@router.get("/api/me")
async def me(request: Request, kind: Annotated[str, Depends(require_auth)]) -> dict[str, Any]:
    """How this request is authenticated (401 when it is not)."""
    return {"ok": True, "auth": kind, "csrf": getattr(request.state, "csrf", None)}
