"""``bccd blobs migrate --to database|fs`` and ``bccd blobs status``: moving attachment
blobs between the file store and the database while bccd serves.

``to_database(db, blobs, grace=…)`` → :class:`MoveReport`, in two steps:

1. every blob file that a message references and the database lacks is read, checked
   against its digest (a damaged file is reported and left alone) and inserted — one
   short transaction per blob;
2. the files are then removed by the file collector's own protocol
   (``bccd.lifecycle.blobgc``: rename aside, mtime, decide again, backup hold), with the
   rule "a file must stay while a message references it and the database does not hold
   it". So a file is removed only once the database holds it (or nothing references it
   any more), never while a backup holds the blobs, and never while an instance still on
   ``fs`` is filing a message that names it: such a file is younger than
   ``retention.blob_grace`` and stays for a later run (``deferred``).

``to_files(db, blobs)`` → :class:`MoveReport`: for each blob in the database, in digest
order, the bytes are read, checked and written to the file store (fsynced), and only then
is the row deleted (its chunks cascade). A filing that holds the row (``FOR KEY SHARE``)
makes the delete wait for its commit; one that comes after finds no row and writes the
blob to the database again (an instance still on ``database``): run again once every
instance is on ``fs``.

Readers look in both stores (``bccd.store.blobs``), and each step writes the new copy
before it removes the old one, so a reader never misses a blob in between. Every step is
idempotent and small: after a crash (or ``kill -9``) the blob in flight is in one store or
both, and running the command again finishes. ``stop`` ends a run between blobs.

``status(db, blobs)`` → :class:`BlobStatus`: what each store holds, and the referenced
blobs that neither holds (``bccd doctor`` reports them).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, exists, select

from bccd.lifecycle import blobgc
from bccd.lifecycle.cascade import chunks
from bccd.log import get_logger
from bccd.store import dbblobs
from bccd.store.blobs import Blobs
from bccd.store.db import Database
from bccd.store.models import Attachment
from bccd.store.models_storage import Blob

log = get_logger("bccd.lifecycle.blobmove")

BATCH = 100


@dataclass(slots=True)
class MoveReport:
    to: str
    copied: int = 0                 # blobs written into the target store
    copied_bytes: int = 0
    removed: int = 0                # old copies removed (moved, or referenced by nothing)
    deferred: int = 0               # left for a later run (young, held by a backup, stopped)
    damaged: list[str] = field(default_factory=list)  # content does not match the digest
    stopped: bool = False
    left: dict[str, int] = field(default_factory=dict)  # blobs each store holds afterwards

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class BlobStatus:
    configured: str
    files: int
    file_bytes: int
    database: int
    database_bytes: int
    missing: int                    # referenced, held by neither store
    missing_examples: list[str]

    @property
    def mixed(self) -> bool:
        return bool(self.files if self.configured == "database" else self.database)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mixed": self.mixed}


def _held_by_db(db: Database, digests: Iterable[str]) -> set[str]:
    with db.read_only() as s:
        return dbblobs.present(s, digests)


def _left(db: Database, blobs: Blobs) -> dict[str, int]:
    with db.read_only() as s:
        in_db, _ = dbblobs.count(s)
    return {"fs": sum(1 for _ in blobgc.stored(blobs.files)), "database": in_db}


# ------------------------------------------------------------------ files → database
def _copy_in(db: Database, blobs: Blobs, digest: str, report: MoveReport) -> None:
    try:
        data = blobs.files.get(digest)
    except FileNotFoundError:  # collected meanwhile
        return
    if hashlib.sha256(data).hexdigest() != digest:
        report.damaged.append(digest)
        log.warning("blob_damaged", digest=digest, store="fs")
        return
    with db.transaction() as s:
        if dbblobs.copy_in(s, digest, data):
            report.copied += 1
            report.copied_bytes += len(data)


def to_database(db: Database, blobs: Blobs, *, grace: float,
                stop: threading.Event | None = None) -> MoveReport:
    report = MoveReport("database")
    digests = [d for d, _ in blobgc.stored(blobs.files)]
    for part in chunks(digests, BATCH):
        if stop is not None and stop.is_set():
            report.stopped = True
            break
        used = blobgc.referenced(db, part)
        for d in sorted(used - _held_by_db(db, used)):
            _copy_in(db, blobs, d, report)
        log.info("blobs_migrate_progress", to="database", copied=report.copied,
                 of=len(digests))

    def must_stay(db_: Database, ds: Iterable[str]) -> set[str]:
        used = blobgc.referenced(db_, ds)
        return used - _held_by_db(db_, used)

    if not report.stopped:
        gc = blobgc.collect(db, blobs.files, grace=grace, keep=must_stay, stop=stop)
        report.removed, report.stopped = gc.deleted, gc.stopped
        report.deferred = gc.young + gc.referenced - len(report.damaged)
    report.left = _left(db, blobs)
    log.info("blobs_migrated", **report.as_dict())
    return report


# ------------------------------------------------------------------ database → files
def to_files(db: Database, blobs: Blobs, *, stop: threading.Event | None = None) -> MoveReport:
    report = MoveReport("fs")
    after = ""
    while True:
        with db.read_only() as s:
            batch = list(s.scalars(select(Blob.sha256).where(Blob.sha256 > after)
                                   .order_by(Blob.sha256).limit(BATCH)))
        if not batch:
            break
        for digest in batch:
            if stop is not None and stop.is_set():
                report.stopped = True
                break
            with db.read_only() as s:
                data = dbblobs.read(s, digest)
            if data is None:  # collected meanwhile
                continue
            if hashlib.sha256(data).hexdigest() != digest:
                report.damaged.append(digest)
                log.warning("blob_damaged", digest=digest, store="database")
                continue
            blobs.files.put(data)              # durable first …
            with db.transaction() as s:        # … then the row goes
                s.execute(delete(Blob).where(Blob.sha256 == digest))
            report.copied += 1
            report.copied_bytes += len(data)
            report.removed += 1
        if report.stopped:
            break
        after = batch[-1]
        log.info("blobs_migrate_progress", to="fs", copied=report.copied)
    report.left = _left(db, blobs)
    log.info("blobs_migrated", **report.as_dict())
    return report


# ------------------------------------------------------------------ status
def status(db: Database, blobs: Blobs, *, examples: int = 5) -> BlobStatus:
    files = file_bytes = 0
    for _, size in blobgc.stored(blobs.files):
        files += 1
        file_bytes += size
    with db.read_only() as s:
        in_db, db_bytes = dbblobs.count(s)
        not_in_db = list(s.scalars(
            select(Attachment.sha256).distinct()
            .where(~exists().where(Blob.sha256 == Attachment.sha256))
            .order_by(Attachment.sha256)))
    missing = []
    for d in not_in_db:
        try:
            blobs.files.open(d).close()
        except FileNotFoundError:
            missing.append(d)
    return BlobStatus(blobs.kind, files, file_bytes, in_db, db_bytes, len(missing),
                      missing[:examples])
