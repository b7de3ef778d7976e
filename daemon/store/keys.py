"""API keys (`Authorization: Bearer ...`), kept in the store's `api_keys` table as SHA-256 hashes only.

A key is `asrbox_` + 32 random bytes (URL-safe base64), shown once when created. The keys are random and long,
so a fast hash is enough (unlike the admin password, which is argon2): a request checks one in microseconds.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from daemon.store.db import Store, iso, utc_now

PREFIX = "asrbox_"
USED_EVERY = timedelta(minutes=1)  # `last_used_at` is written at most this often (no disk write per request)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str) -> tuple[ApiKey, str]:
        """A new key: its row and the key itself (the only time it is seen)."""
        name = " ".join(name.split())
        if not name or len(name) > 100:
            raise ValueError("a key needs a name of 1 to 100 characters")
        key = PREFIX + secrets.token_urlsafe(32)
        kid = secrets.token_hex(4)
        now = utc_now()
        self.store._write(
            "INSERT INTO api_keys (id, name, hash, created_at) VALUES (?, ?, ?, ?)", (kid, name, _digest(key), now)
        )
        return ApiKey(kid, name, now, None, None), key

    def list(self) -> list[ApiKey]:
        rows = self.store._read(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, id"
        )
        return [ApiKey(r["id"], r["name"], r["created_at"], r["last_used_at"], r["revoked_at"]) for r in rows]

    def revoke(self, kid: str) -> bool:
        """True if a live key with this id was revoked now."""
        cur = self.store._write(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (utc_now(), kid)
        )
        return cur.rowcount > 0

    def any_active(self) -> bool:
        return self.store._read_one("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1") is not None

    def check(self, key: str) -> str | None:
        """The id of the live key `key` is (its last use noted), or None."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        row = self.store._read_one("SELECT id, revoked_at, last_used_at FROM api_keys WHERE hash = ?", (_digest(key),))
        if row is None or row["revoked_at"] is not None:
            return None
        now = datetime.now(UTC)
        if row["last_used_at"] is None or row["last_used_at"] < iso(now - USED_EVERY):
            self.store._write("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (iso(now), row["id"]))
        return str(row["id"])
