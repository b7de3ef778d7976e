"""The web console's pages: the app shell at `/`, the login page at `/login`, static assets under
`/static/console/<build>/...`.

Every asset ships in the package (daemon/web/console): no CDN, no build chain. The build id is a hash of the
folder's contents, so asset URLs change whenever a file does and can be cached for a year; the two pages are
revalidated on every load. Assets are gzipped once, in memory, when first asked for. The pages carry a
Content-Security-Policy that allows nothing but this origin.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from functools import cache, lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from daemon.http.deps import refuse

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

ROOT = Path(__file__).resolve().parent.parent / "web" / "console"
PREFIX = "/static/console"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".html", ".js", ".css", ".json", ".svg", ".txt")
YEAR = "public, max-age=31536000, immutable"


@cache
def build_id() -> str:
    """A short hash of every shipped file (names and contents): the asset URLs' version."""
    h = hashlib.sha256()
    for p in sorted(ROOT.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


@lru_cache(maxsize=256)
def _asset(rel: str) -> tuple[bytes, bytes | None] | None:
    """(raw, gzipped or None) for a file under ROOT, or None when there is no such file (no traversal)."""
    path = (ROOT / rel).resolve()
    if not path.is_file() or not path.is_relative_to(ROOT) or path.suffix not in TYPES:
        return None
    raw = path.read_bytes()
    if path.suffix == ".html":
        raw = raw.replace(b"__BUILD__", build_id().encode())
    packed = gzip.compress(raw, 9, mtime=0) if path.suffix in COMPRESSIBLE else None
    return raw, packed if packed is not None and len(packed) < len(raw) else None


def _send(request: Request, rel: str, cache_control: str, page: bool = False) -> Response:
    got = _asset(rel)
    if got is None:
        raise refuse(404, "no such file")
    raw, packed = got
    headers = {"Cache-Control": cache_control, "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
    if page:
        headers |= {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
    body = raw
    if packed is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body, headers["Content-Encoding"] = packed, "gzip"
    return Response(body, media_type=TYPES[Path(rel).suffix], headers=headers)


@router.get("/")
async def shell(request: Request) -> Response:
    return _send(request, "index.html", "no-cache", page=True)


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _send(request, "login.html", "no-cache", page=True)


@router.get("/favicon.ico")
async def favicon() -> Response:
    return RedirectResponse(f"{PREFIX}/{build_id()}/icon.svg", 308)


@router.get(PREFIX + "/{build}/{rel:path}")
async def static(request: Request, build: str, rel: str) -> Response:
    # an old build's URL still gets the current file, just not cached for a year (a page open across an update)
    return _send(request, rel, YEAR if build == build_id() else "no-cache")
