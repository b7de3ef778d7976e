"""Audio retention: by age, by quota, and a free-space floor under which new audio is not archived.

Only audio of utterances that are transcribed is ever deleted (never a pending one). The records, with their
text, are kept unless `store.prune_records` says otherwise.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from daemon.settings import StoreSettings
from daemon.store.db import Store, iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskStatus:
    free_mb: int
    low: bool
    deleted_files: int
    deleted_bytes: int


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
        now = now or datetime.now(UTC)
        s = self.settings
        files = 0
        freed = 0
        archived = self.store.archived_audio()
        doomed: list[tuple[str, str, int]] = []
        if s.retention_days > 0:
            cutoff = iso(now - timedelta(days=s.retention_days))
            doomed += [(rid, path, size) for rid, path, size, created in archived if created < cutoff]
        if s.max_audio_gb > 0:
            quota = int(s.max_audio_gb * 1024**3)
            total = self.store.archived_bytes() - sum(size for _, _, size in doomed)
            chosen = {rid for rid, _, _ in doomed}
            for rid, path, size, _ in archived:  # oldest first
                if total <= quota:
                    break
                if rid not in chosen:
                    doomed.append((rid, path, size))
                    total -= size
        for rid, path, size in doomed:
            try:
                (self.store.root / path).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc.strerror)
                continue
            self.store.drop_audio(rid, s.prune_records)
            files += 1
            freed += size
        if files:
            log.info("retention: deleted %d audio file(s), %.1f MB", files, freed / 1e6)
        free = self.free_mb()
        return DiskStatus(free, 0 <= free < s.min_free_mb, files, freed)
