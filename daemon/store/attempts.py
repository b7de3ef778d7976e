"""Attempt bookkeeping beyond `Store.claim_attempt`: giving back an attempt that never reached a recognizer."""

from __future__ import annotations

from daemon.store.db import Store


def refund_attempt(store: Store, record_id: str) -> None:
    """The attempt counted for `record_id` was not made (the ASR server was unreachable): take it back, so an
    outage does not use up `asr.max_attempts`."""
    store._write("UPDATE records SET attempts = MAX(attempts - 1, 0) WHERE id=?", (record_id,))
