"""Quarantined copies (``bccd.quarantine.copies``): purging keeps the copies still within
retention (SPEC §4.4, §10 ``retention.quarantine``)."""

from __future__ import annotations

import datetime as dt

import pytest

from bccd.config import Settings
from bccd.ingest import holding
from bccd.quarantine import copies, hold
from bccd.store.db import Database

pytestmark = pytest.mark.spec("4.4")

ALT = "alice@home.test"
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def _req(key: str, address: str = ALT) -> hold.HoldRequest:
    return hold.HoldRequest(user_id=1, address=address, raw=b"From: x\r\n\r\nbody\r\n",
                                  dedup_key=key, subject=f"s-{key}", envelope={}, auth={})


def test_purge_deletes_only_copies_past_retention(db: Database, settings: Settings) -> None:
    holding.keep(db, settings, _req("old"), now=T0)
    holding.keep(db, settings, _req("new"), now=T0 + dt.timedelta(days=10))
    assert copies.purge_expired(db, 14 * 86400, now=T0 + dt.timedelta(days=15), batch=1) == 1
    with db.read() as s:
        assert [c.subject for c in copies.list_copies(s, 1)] == ["s-new"]
