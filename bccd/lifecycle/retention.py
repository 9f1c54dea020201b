"""Retention (SPEC §10 ``retention``): what expires, and one maintenance pass.

- ``purge_rejections(db, seconds)`` deletes refused-copy records older than
  ``retention.rejections``, in batches (each its own short transaction, so ingest never
  waits long behind it); returns how many.
- Quarantined copies older than ``retention.quarantine`` are deleted by
  ``bccd.quarantine.copies.purge_expired`` — the quarantine's own rule, called from here.
- ``purge_expired_grants(db)`` deletes Mail page sessions, sign-in links and OAuth
  ``state`` records that expired more than ``GRANT_KEEP`` ago (until then a used or
  expired link still answers "used"/"expired" rather than "unknown").
- ``run_once(db, blobs, settings)`` → :class:`RetentionReport`: the purges, then a blob
  GC sweep of both stores (``dbgc.collect_all``; the file store's with
  ``retention.blob_grace``). The periodic worker (``bccd.lifecycle.worker``) runs it every
  ``retention.interval`` on one instance at a time; it is idempotent, so instances that
  run it at once (or after one died mid-pass) do no harm. ``stop`` (set when the server stops) ends
  each step between batches, so a long pass never holds a shutdown up; the next pass
  goes on from there.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from bccd.config import Settings
from bccd.lifecycle import blobgc, dbgc
from bccd.quarantine import copies
from bccd.store.blobs import Blobs
from bccd.store.db import Database
from bccd.store.grants import OAuthState, SigninLink, WebSession
from bccd.store.models import Rejection, utcnow
from bccd.store.queries import delete_older_than

GRANT_KEEP = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    rejections: int
    quarantined: int
    blobs: blobgc.GcReport
    grants: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"rejections": self.rejections, "quarantined": self.quarantined,
                "grants": self.grants, "blobs": self.blobs.as_dict()}


def purge_rejections(db: Database, retention_seconds: int, *, now: dt.datetime | None = None,
                     batch: int = 1000, stop: threading.Event | None = None) -> int:
    """Delete refused-copy records created more than ``retention_seconds`` ago."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=retention_seconds)
    return delete_older_than(db, Rejection, Rejection.created_at, cutoff, batch=batch, stop=stop)


def purge_expired_grants(db: Database, *, now: dt.datetime | None = None, batch: int = 1000,
                         stop: threading.Event | None = None) -> int:
    """Delete sessions, sign-in links and OAuth states expired more than ``GRANT_KEEP`` ago."""
    cutoff = (now or utcnow()) - GRANT_KEEP
    return sum(delete_older_than(db, model, model.expires_at, cutoff, batch=batch, stop=stop)
               for model in (WebSession, SigninLink, OAuthState))


def run_once(db: Database, blobs: Blobs, settings: Settings, *,
             now: dt.datetime | None = None, stop: threading.Event | None = None) -> RetentionReport:
    r = settings.retention
    rejections = purge_rejections(db, r.rejections, now=now, stop=stop)
    quarantined = copies.purge_expired(db, r.quarantine, now=now, stop=stop)
    grants = purge_expired_grants(db, now=now, stop=stop)
    gc = dbgc.collect_all(db, blobs, grace=r.blob_grace, stop=stop)
    return RetentionReport(rejections, quarantined, gc, grants)
