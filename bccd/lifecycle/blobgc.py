"""Garbage collection of attachment blobs in the file store that no message references
any more (blobs in the database: ``bccd.lifecycle.dbgc``, which also runs both).

``collect(db, blobs, grace=…)`` sweeps the whole blob directory (the periodic worker);
``collect(…, candidates=digests)`` looks only at the given blobs (erase, user and company
delete, right after their commit). Both return a :class:`GcReport`. A blob is
*referenced* while a row of a column in ``REFERENCES`` names its digest.

Why a blob that an ingest is about to reference is never deleted
-----------------------------------------------------------------
Ingest (``bccd.ingest.filing.put_blobs``) calls ``BlobStore.put`` — which writes the blob,
or, when it exists, refreshes its mtime — *before* the transaction that inserts the
``attachments`` row; call the put time ``p`` and the commit time ``q``. ``grace``
(``retention.blob_grace``) is chosen larger than any ``q - p``. For each candidate the
collector, in this order:

1. skips it if it is referenced (a cheap pre-check: referenced blobs are left alone;
   ``BlobStore.get`` reads a blob under its private name, so readers see no gap);
2. **renames** ``<digest>`` to a private ``.gc-<digest>-<random>`` name in the same
   directory (time ``r``) — atomic: from now on no ``put`` can touch the renamed file;
3. stats the renamed file (time ``s``); mtime younger than ``grace`` → put it back;
4. checks references again (time ``d``); referenced → put it back;
5. checks for a backup hold (below); held → put it back;
6. unlinks the renamed file.

Take any ingest whose commit ``q`` is after ``d`` (one committed before ``d`` is seen by
step 4). If its put ran after ``r``, the name was free, so ``put`` wrote a fresh file
(``put`` also rewrites when its mtime refresh finds the file just renamed away): what
the collector unlinks is a different inode, the new blob stays. If its put ran before
``r``, the renamed file carries an mtime ``>= p``, so at step 3 its age is
``s - p < d - p < q - p < grace`` and it is put back. Either way the blob the commit
names exists. Putting back never loses data: content-addressed files with one name are
identical, so ``os.replace`` over a freshly written one changes nothing. The only
assumption is the time bound ``q - p < grace`` (one hour by default; filing takes
seconds) and a shared clock for mtimes on a shared blob directory.

A collector that crashes between steps 2 and 6 leaves a ``.gc-`` file; a later sweep
puts every such file renamed more than ``TRASH_STALE_AGE`` ago back first (and decides
again), so a crash never loses a blob.
Several instances may collect at once: the rename decides which one owns a blob.

Backup holds: ``with hold(blobs): …`` creates ``<blob_dir>/.hold-<random>``; while a hold
younger than ``HOLD_MAX_AGE`` exists nothing is deleted (step 5 comes after step 4, so a
snapshot taken after the hold was created only names blobs that stay). ``bccd backup``
takes one; the PostgreSQL procedure in docs/operations.md creates one by hand.

``pause(step, digest)`` is a test seam called between the steps.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bccd.lifecycle.cascade import chunks
from bccd.log import get_logger
from bccd.private import private_dirs
from bccd.store.blobs import GC_PREFIX, BlobStore
from bccd.store.db import Database
from bccd.store.models import Attachment

log = get_logger("bccd.lifecycle.blobgc")

REFERENCES: tuple[Any, ...] = (Attachment.sha256,)
HOLD_PREFIX = ".hold-"
HOLD_MAX_AGE = 6 * 3600          # a hold older than this is a crashed backup's: ignored
TRASH_PREFIX = GC_PREFIX         # BlobStore.get reads a blob under this name too
TRASH_STALE_AGE = 600            # a .gc- file renamed this long ago belongs to a crashed pass
TEMP_PREFIX = ".tmp-"            # BlobStore.put's temporary files
STALE_TEMP_AGE = 24 * 3600       # a temporary file this old belongs to a crashed put
_HEX = frozenset("0123456789abcdef")

Pause = Callable[[str, str], None]


@dataclass(slots=True)
class GcReport:
    scanned: int = 0        # blobs looked at
    deleted: int = 0
    freed_bytes: int = 0
    referenced: int = 0     # still used by a message: kept
    young: int = 0          # within the grace period, or left by a hold or a stop: a later pass
    missing: int = 0        # already gone
    held: bool = False      # a backup hold stopped the pass
    stopped: bool = False   # the server is stopping: the pass ended between batches
    recovered: int = 0      # files of an interrupted pass put back
    stale_temp: int = 0     # temporary files of crashed writes removed

    @property
    def deferred(self) -> int:
        """Unreferenced blobs kept for now (young, a backup hold, or the server stopping
        mid-pass): a later pass deletes them."""
        return self.young

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: GcReport) -> GcReport:
        """Both reports together (the two stores' collectors of one pass)."""
        for k, v in asdict(other).items():
            old = getattr(self, k)
            setattr(self, k, (old or v) if isinstance(v, bool) else old + v)
        return self


def is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in _HEX for c in name)


def referenced(db: Database, digests: Iterable[str]) -> set[str]:
    """Those of ``digests`` that a row in ``REFERENCES`` names."""
    ds = sorted(set(digests))
    found: set[str] = set()
    with db.read() as s:
        for part in chunks(ds):
            for col in REFERENCES:
                found.update(s.scalars(select(col).distinct().where(col.in_(part))))
    return found


# ------------------------------------------------------------------ holds
@contextlib.contextmanager
def hold(blobs: BlobStore) -> Iterator[Path]:
    """No blob is deleted while this is held (by any process sharing the blob directory)."""
    private_dirs(blobs.root)
    fd, name = tempfile.mkstemp(dir=blobs.root, prefix=HOLD_PREFIX)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def held(blobs: BlobStore, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(blobs.root))
    except FileNotFoundError:
        return False
    for e in entries:
        if e.name.startswith(HOLD_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                if now - e.stat().st_mtime < HOLD_MAX_AGE:
                    return True
    return False


# ------------------------------------------------------------------ the sweep
def _leaf_dirs(root: Path) -> Iterator[Path]:
    try:
        top = sorted(e.path for e in os.scandir(root) if e.is_dir() and len(e.name) == 2)
    except FileNotFoundError:
        return
    for d1 in top:
        with contextlib.suppress(FileNotFoundError):
            for d2 in sorted(e.path for e in os.scandir(d1) if e.is_dir() and len(e.name) == 2):
                yield Path(d2)


def stored(blobs: BlobStore) -> Iterator[tuple[str, int]]:
    """``(digest, size)`` of every blob file, in digest order (not those held aside)."""
    for leaf in _leaf_dirs(blobs.root):
        with contextlib.suppress(FileNotFoundError):
            entries = sorted(os.scandir(leaf), key=lambda e: e.name)
            for e in entries:
                if is_digest(e.name):
                    with contextlib.suppress(FileNotFoundError):
                        yield e.name, e.stat().st_size


def _put_back(trash: Path, target: Path) -> None:
    if target.exists():  # a put re-created it meanwhile: same content
        trash.unlink(missing_ok=True)
    else:
        os.replace(trash, target)


def _old_candidates(blobs: BlobStore, grace: float, now: float, report: GcReport,
                    stop: threading.Event | None) -> list[str]:
    """Walk the blob directory: put back interrupted passes' files, drop stale temporary
    files, and return the digests of blobs older than ``grace`` (those found before
    ``stop`` is set)."""
    out = []
    for leaf in _leaf_dirs(blobs.root):
        if stop is not None and stop.is_set():
            report.stopped = True
            break
        with contextlib.suppress(FileNotFoundError):
            for e in os.scandir(leaf):
                name = e.name
                try:
                    if name.startswith(TRASH_PREFIX):
                        digest = name[len(TRASH_PREFIX):].split("-", 1)[0]
                        # the rename set ctime: a recent one is another collector's, live
                        if is_digest(digest) and now - e.stat().st_ctime > TRASH_STALE_AGE:
                            _put_back(Path(e.path), blobs.path(digest))
                            report.recovered += 1
                        continue
                    if name.startswith(TEMP_PREFIX):
                        if now - e.stat().st_mtime > STALE_TEMP_AGE:
                            Path(e.path).unlink(missing_ok=True)
                            report.stale_temp += 1
                        continue
                    if not is_digest(name):
                        continue
                    report.scanned += 1
                    if now - e.stat().st_mtime < grace:
                        report.young += 1
                        continue
                    out.append(name)
                except FileNotFoundError:
                    continue
    return out


Keep = Callable[[Database, Iterable[str]], set[str]]


def collect(db: Database, blobs: BlobStore, *, grace: float,
            candidates: Iterable[str] | None = None, clock: Callable[[], float] = time.time,
            pause: Pause | None = None, stop: threading.Event | None = None,
            keep: Keep = referenced, report: GcReport | None = None) -> GcReport:
    """Delete unreferenced blobs last written more than ``grace`` seconds ago (see the
    module docstring for the protocol); ``candidates`` limits the pass to those digests.
    ``stop`` (the server stopping) ends the pass between directories and between batches:
    what is left is kept for the next pass, nothing is half done. ``keep`` decides which
    blobs must stay (steps 1 and 4): those referenced; ``bccd blobs migrate`` also keeps
    those not yet copied into the database."""
    report = report or GcReport()
    now = clock()
    if candidates is None:
        todo = _old_candidates(blobs, grace, now, report, stop)
    else:
        todo = []
        for d in sorted(set(candidates)):
            report.scanned += 1
            try:
                age = now - blobs.path(d).stat().st_mtime
            except FileNotFoundError:
                report.missing += 1
                continue
            if age < grace:
                report.young += 1
            else:
                todo.append(d)
    parts = list(chunks(todo))
    for i, part in enumerate(parts):
        if stop is not None and stop.is_set():
            report.stopped = True
        if report.held or report.stopped:  # nothing more this pass: the rest waits for the next
            report.young += sum(len(p) for p in parts[i:])
            break
        _collect_batch(db, blobs, list(part), grace, clock, pause, report, keep)
    if report.deleted or report.held or report.recovered or report.stopped:
        log.info("blob_gc", **report.as_dict())
    return report


def _collect_batch(db: Database, blobs: BlobStore, digests: list[str], grace: float,
                   clock: Callable[[], float], pause: Pause | None, report: GcReport,
                   keep: Keep = referenced) -> None:
    step = pause or (lambda _step, _digest: None)
    used = keep(db, digests)                                           # 1. pre-check
    report.referenced += len(used)
    moved: dict[str, tuple[Path, Path, int]] = {}
    for d in digests:
        if d in used:
            continue
        target = blobs.path(d)
        trash = target.with_name(f"{TRASH_PREFIX}{d}-{secrets.token_hex(6)}")
        step("before_rename", d)
        try:
            os.rename(target, trash)                                   # 2. take it away
        except FileNotFoundError:
            report.missing += 1
            continue
        step("after_rename", d)
        try:
            st = trash.stat()                                          # 3. still old?
        except FileNotFoundError:  # put back by a sweep that took it for a crashed pass's
            report.young += 1
            continue
        if clock() - st.st_mtime < grace:
            _put_back(trash, target)
            report.young += 1
            continue
        moved[d] = (target, trash, st.st_size)
    if not moved:
        return
    step("before_recheck", ",".join(moved))
    again = keep(db, moved)                                            # 4. referenced now?
    is_held = held(blobs)                                              # 5. backup hold?
    for d, (target, trash, size) in moved.items():
        if d in again:
            _put_back(trash, target)
            report.referenced += 1
        elif is_held:
            _put_back(trash, target)
        else:
            trash.unlink(missing_ok=True)                              # 6. delete
            report.deleted += 1
            report.freed_bytes += size
    if is_held:
        report.held = True
        report.young += sum(1 for d in moved if d not in again)
