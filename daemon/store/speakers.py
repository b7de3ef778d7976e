"""Speakers in the store (migration 10): live utterances' labels and embeddings, names given to labels per
session or per file record, enrolled voices. Functions over the Store's helpers; every error a StoreError.

What is kept: per live utterance its label (S1, S2...) and its 192-number embedding; per file record each
segment's label (in its segments JSON); names per label of a session or record (typed by a user, or kept from
an enrolled voice that named it; '' where a user removed one); per enrolled voice its name and embedding (never
its audio). `delete_voice` removes a voice (not the names it gave); deleting a record removes its names.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from daemon.store.db import Store, utc_now

Vector = npt.NDArray[np.float32]
SCOPES = ("session", "record")


def to_blob(vector: Vector) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> Vector:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    embedding: Vector
    seconds: float
    created_at: str


def set_utterance_speaker(store: Store, record_id: str, label: str | None, embedding: Vector | None) -> None:
    store._write(
        "UPDATE records SET speaker=?, speaker_embedding=? WHERE id=?",
        (label, to_blob(embedding) if embedding is not None else None, record_id),
    )


def session_embeddings(store: Store, session_id: str | None) -> list[tuple[str, Vector]]:
    """(label, embedding) of a session's labelled utterances, oldest first (to rebuild its speakers)."""
    rows = store._read(
        "SELECT speaker, speaker_embedding FROM records WHERE session_id IS ? AND speaker IS NOT NULL "
        "AND speaker_embedding IS NOT NULL ORDER BY created_at, rowid",
        (session_id,),
    )
    return [(str(r[0]), from_blob(r[1])) for r in rows]


def rename(store: Store, scope: str, scope_id: str, label: str, name: str | None) -> None:
    """Name a label within a session or a record. An empty name removes the name and keeps a row with '' in its
    place: the label is then never named again by an enrolled voice (the user said it has no name)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    store._write(
        "INSERT INTO speaker_names (scope, scope_id, label, name) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (scope, scope_id, label) DO UPDATE SET name=excluded.name",
        (scope, scope_id, label, name or ""),
    )


def names(store: Store, scope: str, scope_id: str | None, removed: bool = False) -> dict[str, str]:
    """label -> name within a session or a record; `removed`: with the labels whose name a user removed ('')."""
    if scope_id is None:
        return {}
    rows = store._read("SELECT label, name FROM speaker_names WHERE scope=? AND scope_id=?", (scope, scope_id))
    return {str(r[0]): str(r[1]) for r in rows if removed or r[1]}


def add_voice(store: Store, name: str, embedding: Vector, seconds: float) -> str:
    """Enroll (or replace) the voice called `name`."""
    vid = str(uuid.uuid4())
    with store._tx() as db:
        db.execute("DELETE FROM voices WHERE name=?", (name,))
        db.execute(
            "INSERT INTO voices (id, name, embedding, seconds, created_at) VALUES (?, ?, ?, ?, ?)",
            (vid, name, to_blob(embedding), round(seconds, 2), utc_now()),
        )
    return vid


def voices(store: Store) -> list[Voice]:
    rows = store._read("SELECT id, name, embedding, seconds, created_at FROM voices ORDER BY name")
    return [Voice(r[0], r[1], from_blob(r[2]), float(r[3]), r[4]) for r in rows]


def voices_version(store: Store) -> tuple[int, str]:
    """Changes whenever a voice is enrolled, replaced or deleted (by the daemon or by the CLI beside it)."""
    row = store._read("SELECT count(*), coalesce(max(created_at), '') FROM voices", ())[0]
    return int(row[0]), str(row[1])


def stored_name(raw: str) -> str:
    """A name as the store keeps it: NFC, runs of white space (new lines too) one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", raw).split())


def delete_voice(store: Store, name_or_id: str) -> bool:
    """Delete the voice of that name (as typed, or as enrolling stores it: NFC, white space collapsed), else
    the one of that id (a voice named like another's id takes only itself away)."""
    with store._tx() as db:
        cur = db.execute("DELETE FROM voices WHERE name IN (?, ?)", (name_or_id, stored_name(name_or_id)))
        if cur.rowcount == 0:
            cur = db.execute("DELETE FROM voices WHERE id=?", (name_or_id,))
        return cur.rowcount > 0


def records_of_speaker(store: Store, speaker: str, session_id: str | None = None) -> list[str]:
    """Ids of live utterances said by `speaker` (a label, or a name given in their session), newest first."""
    rows = store._read(
        "SELECT r.id FROM records r LEFT JOIN speaker_names n ON n.scope='session' AND n.scope_id=r.session_id "
        "AND n.label=r.speaker WHERE r.speaker IS NOT NULL AND (r.speaker=? OR n.name=?) "
        "AND (? IS NULL OR r.session_id=?) ORDER BY r.created_at DESC, r.rowid",
        (speaker, speaker, session_id, session_id),
    )
    return [str(r[0]) for r in rows]
