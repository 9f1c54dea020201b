"""Attachment bytes in the database (``storage.blobs = "database"``): one ``blobs`` row per
content, its bytes in ``blob_chunks`` rows of ``CHUNK_SIZE`` (1 MiB), so a download reads
and sends one chunk at a time and a 25 MiB attachment is never whole in memory.

``store(session, items)`` runs *inside the transaction that files the message*: for each
``(digest, data)`` it makes the blob present and keeps it so until that transaction ends —

- it inserts the blob row (``ON CONFLICT DO NOTHING``) and, when that made the row, its
  chunks: a row this transaction inserted is invisible to everyone else until the commit;
- when the row existed, on PostgreSQL it takes ``FOR KEY SHARE`` on it (the weakest lock
  that conflicts with the collector's ``FOR UPDATE``). A blob the collector deletes while
  we wait on its lock is seen as missing, and written again;
- on SQLite the filing transaction holds the database's write lock from its BEGIN, so
  nothing can delete a blob between the look and the insert.

Why the collector can never delete a blob a committing message names: see
``bccd.lifecycle.dbgc``. Rows are locked and inserted in digest order, so two filings of
the same new attachments do not deadlock on each other.

Reads (``locate``, ``chunk``, ``read``) take any session; a chunk that is gone (the blob
was collected or moved to the file store meanwhile) reads as ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from bccd.store import direct
from bccd.store.models import utcnow
from bccd.store.models_storage import Blob, BlobChunk
from bccd.store.queries import insert_ignore_returning

CHUNK_SIZE = 1 << 20
_TRIES = 5  # a blob deleted and inserted again by others this many times in a row: give up

_INSERT_CHUNK = insert(BlobChunk)
_LOOK = select(Blob.sha256).where(Blob.sha256 == bindparam("d"))
_LOCK = _LOOK.with_for_update(read=True, key_share=True)


def _lock(session: Session, digest: str) -> bool:
    """The stored blob's row locked ``FOR KEY SHARE`` until the transaction ends (on
    PostgreSQL: waiting for a collector that holds it, and then not finding a row it
    deleted); False when there is no row."""
    conn = session.connection()
    stmt = _LOCK if conn.dialect.name == "postgresql" else _LOOK
    return bool(direct.execute(conn, stmt, {"d": digest}).first())


def _insert(session: Session, digest: str, data: bytes | memoryview) -> bool:
    """Insert the blob with its chunks; False when a row of that digest exists already
    (committed by another transaction): nothing was written."""
    made = insert_ignore_returning(session, Blob, {
        "sha256": digest, "size": len(data), "chunk_size": CHUNK_SIZE, "created_at": utcnow(),
    }, "sha256")
    if made is None:
        return False
    conn = session.connection()
    view = memoryview(data)
    for n, start in enumerate(range(0, len(view), CHUNK_SIZE)):
        direct.execute(conn, _INSERT_CHUNK, {"sha256": digest, "n": n,
                                             "data": bytes(view[start:start + CHUNK_SIZE])})
    return True


def store(session: Session, items: Iterable[tuple[str, bytes]]) -> int:
    """Make every blob present for the rest of this transaction (module docstring);
    returns how many were written (the others existed)."""
    wanted = dict(items)
    written = 0
    for digest in sorted(wanted):
        for _ in range(_TRIES):
            if _insert(session, digest, wanted[digest]):
                written += 1
                break
            if _lock(session, digest):
                break
        else:
            raise RuntimeError(f"blob {digest} keeps being deleted and written by others")
    return written


def copy_in(session: Session, digest: str, data: bytes) -> bool:
    """Store a blob read from elsewhere (``bccd blobs migrate``): True when this wrote it,
    False when the database had it already."""
    return _insert(session, digest, data)


def locate(session: Session, digest: str) -> tuple[int, int] | None:
    """``(size, chunk_size)`` of a stored blob, or ``None``."""
    row = session.execute(select(Blob.size, Blob.chunk_size).where(Blob.sha256 == digest)).first()
    return None if row is None else (int(row.size), int(row.chunk_size))


def chunk(session: Session, digest: str, n: int) -> bytes | None:
    data = session.scalar(select(BlobChunk.data).where(BlobChunk.sha256 == digest,
                                                        BlobChunk.n == n))
    return None if data is None else bytes(data)


def read(session: Session, digest: str) -> bytes | None:
    """The whole blob (for small reads: inline images, a migration), or ``None``."""
    where = locate(session, digest)
    if where is None:
        return None
    size, _ = where
    parts = [bytes(d) for d in session.scalars(
        select(BlobChunk.data).where(BlobChunk.sha256 == digest).order_by(BlobChunk.n))]
    data = b"".join(parts)
    return data if len(data) == size else None  # deleted while we read


def present(session: Session, digests: Iterable[str]) -> set[str]:
    ds = sorted(set(digests))
    found: set[str] = set()
    for i in range(0, len(ds), 500):
        found.update(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(ds[i:i + 500]))))
    return found


def count(session: Session) -> tuple[int, int]:
    """``(blobs, bytes)`` stored in the database."""
    n, size = session.execute(select(func.count(), func.coalesce(func.sum(Blob.size), 0))).one()
    return int(n), int(size)
