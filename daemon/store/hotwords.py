"""The box's hotword list as the HTTP API last set it: `<store>/hotwords.txt`, one term a line.

While the file exists it is the box list (it replaces `text.hotwords` + `text.hotwords_file`, even when it is
empty); the daemon, `asrbox transcribe` and jobs all use it, so they spell the same terms the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from daemon.errors import StoreError
from daemon.settings import Settings

FILE_NAME = "hotwords.txt"


def saved_terms(root: Path) -> tuple[str, ...] | None:
    """The list set over the API, or None when none was (the config's list is in force)."""
    path = root / FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read the box's hotwords {path}: {exc}") from None
    return tuple(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def box_terms(settings: Settings) -> tuple[str, ...]:
    saved = saved_terms(settings.store.path)
    return saved if saved is not None else settings.text.terms()


def save_terms(root: Path, terms: Sequence[str]) -> None:
    """Replace the file atomically (write, fsync, rename)."""
    path = root / FILE_NAME
    tmp = path.with_name(f".{FILE_NAME}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write("".join(f"{t}\n" for t in terms))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot save the box's hotwords to {path}: {exc.strerror or exc}") from None
