"""Garbage collection of blobs stored in the database (``storage.blobs = "database"``).

``collect(db)`` deletes every ``blobs`` row (its chunks cascade) that no attachment
names; ``collect(db, candidates=digests)`` looks only at those (erase, user and company
delete). It returns a ``GcReport`` (``bccd.lifecycle.blobgc``). Unlike the file store's
collector there is no grace period and no backup hold: the bytes are written in the
transaction that files the message, and a database snapshot (``pg_dump``, SQLite's
backup) holds rows and blobs at one instant.

Each batch is one short transaction of two set-based statements:

1. ``SELECT sha256 FROM blobs WHERE NOT EXISTS (attachment naming it) ORDER BY sha256
   LIMIT n FOR UPDATE SKIP LOCKED`` — the candidates, locked (a batch frees at most
   ``BATCH_BYTES``, so a filing that waits for one of them waits briefly);
2. ``DELETE FROM blobs WHERE sha256 IN (those) AND NOT EXISTS (attachment naming it)``
   — decided again, on a new snapshot.

Why a message being filed never loses its blob (PostgreSQL, READ COMMITTED). The filing
transaction F locks the blob row ``FOR KEY SHARE`` (or inserts it) *before* it inserts
the attachment row, and holds that until it commits (``bccd.store.dbblobs.store``).
``FOR UPDATE`` conflicts with ``FOR KEY SHARE``, so for a blob the collector C locked in
step 1, every F either

- held its lock before C's: then C's ``SKIP LOCKED`` passed the row over (F still running),
  or F had committed before C got the lock — and so before step 2 took its snapshot,
  which therefore sees F's attachment and keeps the blob; or
- asks for its lock after C's: it waits until C commits; if C deleted the row, F's
  locking SELECT returns nothing for it and F writes the blob again.

Step 1 alone could not decide: a filing that commits between its snapshot and its lock
would go unseen (a lock that was only held, not an update, is not re-checked when it is
released). Step 2 alone could not either, for the same reason. ``SKIP LOCKED`` also means
that several instances collecting at once divide the blobs between them instead of
queueing behind each other, and that the collector never waits for ingest.

On SQLite every write transaction holds the database's write lock from its BEGIN, so
filing and collecting never interleave; the same statements run without row locks.

A collector that dies mid-batch leaves its transaction to be rolled back: nothing is
half deleted. ``stop`` ends a pass between batches; ``pause(step, digests)`` is a test seam
called between the two statements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.sql.elements import ColumnElement

from bccd.lifecycle import blobgc
from bccd.lifecycle.blobgc import GcReport
from bccd.lifecycle.cascade import CHUNK, chunks
from bccd.log import get_logger
from bccd.store import dbblobs
from bccd.store.blobs import Blobs
from bccd.store.db import Database
from bccd.store.models import Attachment
from bccd.store.models_storage import Blob

log = get_logger("bccd.lifecycle.dbgc")

Pause = Callable[[str, list[str]], None]
BATCH_BYTES = 64 * 1024 * 1024


def _unreferenced() -> ColumnElement[bool]:
    return ~exists().where(Attachment.sha256 == Blob.sha256)


def _batch(db: Database, scope: ColumnElement[bool], after: str, limit: int,
           pause: Pause | None, report: GcReport) -> str | None:
    """One batch (one transaction); the last digest it looked at, or None when done."""
    with db.transaction() as s:
        q: Any = (select(Blob.sha256, Blob.size).where(scope, Blob.sha256 > after, _unreferenced())
                  .order_by(Blob.sha256).limit(limit))
        if not db.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        rows = s.execute(q).all()
        if not rows:
            return None
        # a batch frees at most BATCH_BYTES (the first blob whatever its size), so a filing
        # that waits for one of its blobs never waits long; the rest is the next batch's
        locked: list[str] = []
        total = 0
        for digest, size in rows:
            if locked and total + size > BATCH_BYTES:
                break
            locked.append(str(digest))
            total += int(size)
        if pause is not None:
            pause("locked", locked)
        gone = s.execute(delete(Blob).where(Blob.sha256.in_(locked), _unreferenced())
                         .returning(Blob.sha256, Blob.size)).all()
    report.deleted += len(gone)
    report.freed_bytes += sum(int(r.size) for r in gone)
    report.scanned += len(locked)
    report.referenced += len(locked) - len(gone)  # named by a message filed meanwhile
    return str(locked[-1])


def collect(db: Database, *, candidates: Iterable[str] | None = None,
            stop: threading.Event | None = None, pause: Pause | None = None,
            batch: int = CHUNK) -> GcReport:
    """Delete the stored blobs no attachment names (all, or among ``candidates``)."""
    report = GcReport()
    scopes: list[ColumnElement[bool]]
    present = 0
    if candidates is None:
        scopes = [Blob.sha256.is_not(None)]
    else:
        wanted = sorted(set(candidates))
        with db.read_only() as s:
            present = len(dbblobs.present(s, wanted))
        scopes = [Blob.sha256.in_(list(part)) for part in chunks(wanted)]
    for scope in scopes:
        after: str | None = ""
        while after is not None:
            if stop is not None and stop.is_set():
                report.stopped = True
                break
            after = _batch(db, scope, after, batch, pause, report)
        if report.stopped:
            break
    if candidates is not None and not report.stopped:
        # the candidates in the database that stay: a message still names them
        report.scanned, report.referenced = present, present - report.deleted
    if report.deleted or report.stopped:
        log.info("blob_gc_database", **report.as_dict())
    return report


def collect_all(db: Database, blobs: Blobs, *, grace: float,
                candidates: Iterable[str] | None = None,
                stop: threading.Event | None = None) -> GcReport:
    """One collection over both stores, whichever ``storage.blobs`` names: the database's
    blobs (``collect``) and the file store's (``blobgc.collect``, with its grace period), so
    what a store still holds before or after ``bccd blobs migrate`` is collected too."""
    report = collect(db, candidates=candidates, stop=stop)
    if not report.stopped:
        blobgc.collect(db, blobs.files, grace=grace, candidates=candidates, stop=stop,
                       report=report)
    return report
