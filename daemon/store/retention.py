"""Audio retention: by age, by quota, and a free-space floor under which new audio is not archived.

Only audio of utterances that are transcribed is ever deleted (never a pending one). The records, with their
text, are kept unless `store.prune_records` says otherwise. Outbox rows delivered more than `OUTBOX_KEEP` ago
are pruned too.

`Retention.run()` is meant for a worker thread: it opens its own connection to the database (nothing is
shared with the caller's `Store`), selects candidates with SQL a batch at a time (oldest first), deletes
their files, makes each touched folder durable once, then updates or deletes the batch's records in one
transaction. A crash between the two steps only leaves records whose file is already gone; the next run
finishes them.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.settings import StoreSettings
from daemon.store.audio import fsync_dir
from daemon.store.db import ArchivedAudio, Store, iso

log = logging.getLogger(__name__)

BATCH = 500  # records per transaction (and per SELECT)
OUTBOX_KEEP = timedelta(days=1)  # delivered finals are kept this long (for a look after the fact), then pruned


@dataclass(frozen=True)
class DiskStatus:
    free_mb: int
    low: bool
    deleted_files: int
    deleted_bytes: int


@dataclass
class _Tally:
    files: int = 0
    bytes: int = 0
    batches: int = 0


class Retention:
    def __init__(self, store: Store, settings: StoreSettings) -> None:
        self.store = store
        self.settings = settings

    def free_mb(self) -> int:
        try:
            return int(shutil.disk_usage(self.store.root).free // (1024 * 1024))
        except OSError:
            return -1

    def run(self, now: datetime | None = None) -> DiskStatus:
        """One pass; safe to call from a worker thread while other threads use `self.store`.
        Raises `StoreError` (one line) if the database cannot be read or written."""
        now = now or datetime.now(UTC)
        t0 = time.monotonic()
        tally = _Tally()
        own = Store(self.store.root)  # this thread's own connection; busy_timeout makes the two wait in turn
        try:
            self._sweep(own, now, tally)
            pruned = own.prune_outbox(iso(now - OUTBOX_KEEP))
        finally:
            own.close(checkpoint=False)
        if tally.files or pruned:
            log.info(
                "retention: deleted %d audio file(s), %.1f MB in %d batch(es), pruned %d outbox row(s) in %.2f s",
                tally.files,
                tally.bytes / 1e6,
                tally.batches,
                pruned,
                time.monotonic() - t0,
            )
        free = self.free_mb()
        return DiskStatus(free, 0 <= free < self.settings.min_free_mb, tally.files, tally.bytes)

    def _sweep(self, store: Store, now: datetime, tally: _Tally) -> None:
        s = self.settings
        if s.retention_days > 0:
            self._delete_oldest(store, tally, before=iso(now - timedelta(days=s.retention_days)))
        if s.max_audio_gb > 0:
            excess = store.archived_bytes() - int(s.max_audio_gb * 1024**3)
            if excess > 0:
                self._delete_oldest(store, tally, excess=excess)

    def _delete_oldest(
        self, store: Store, tally: _Tally, *, before: str | None = None, excess: int | None = None
    ) -> None:
        """Delete archived audio oldest first, a batch at a time: all of it created before `before`, or
        until `excess` bytes are gone (a file that cannot be deleted does not count)."""
        after: tuple[str, int] | None = None
        while excess is None or excess > 0:
            page = store.archived_page(before=before, after=after, limit=BATCH)
            if not page:
                return
            if excess is not None:
                page = _enough(page, excess)
            after = (page[-1].created_at, page[-1].rowid)  # the next page starts after the last row tried
            freed = self._delete_batch(store, page, tally)
            if excess is not None:
                excess -= freed

    def _delete_batch(self, store: Store, rows: list[ArchivedAudio], tally: _Tally) -> int:
        """Files first (each folder made durable once), then the records in one transaction; bytes freed."""
        gone: list[ArchivedAudio] = []
        folders: set[Path] = set()
        for row in rows:
            path = store.root / row.audio_path
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc.strerror)
                continue
            gone.append(row)
            folders.add(path.parent)
        for folder in folders:
            fsync_dir(folder)
        store.drop_audio_many([r.id for r in gone], self.settings.prune_records)
        freed = sum(r.size for r in gone)
        tally.files += len(gone)
        tally.bytes += freed
        tally.batches += 1
        return freed


def _enough(page: list[ArchivedAudio], excess: int) -> list[ArchivedAudio]:
    """The oldest rows of `page` whose sizes just cover `excess` bytes."""
    chosen: list[ArchivedAudio] = []
    for row in page:
        if excess <= 0:
            break
        chosen.append(row)
        excess -= row.size
    return chosen
