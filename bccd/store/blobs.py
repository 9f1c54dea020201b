"""Where attachment bytes live: the file store, the database, and ``Blobs`` over both.

``storage.blobs`` (``Settings.blob_store``) picks the store new attachments go to:

- ``fs`` — ``BlobStore``, content-addressed files ``<blob_dir>/ab/cd/<sha256>``.
  ``put(data)`` writes to a temporary file, fsyncs it, renames it into place and fsyncs
  the directory, so a blob is durable *before* the database row that references it
  commits. Identical content is stored once, and ``put`` of content already stored
  refreshes the blob's mtime: the garbage collector (``bccd.lifecycle.blobgc``) relies on
  that. ``get``/``open`` also find a blob the collector has taken aside for a moment
  (``GC_PREFIX``), so a reader never sees that gap.
- ``database`` — ``bccd.store.dbblobs``: the bytes are written in the transaction that
  files the message (``bccd.ingest.filing``), in 1 MiB chunk rows.

``Blobs`` is what the rest of bccd holds: ``prepare`` (before the filing transaction:
the files written, or only the digests computed for the database), ``get`` (whole, for
small reads) and ``open`` (a ``BlobReader`` that reads chunk by chunk, for downloads).
Reads look in the configured store, then the other, then the configured one again —
``bccd blobs migrate`` writes a blob to its new store before it removes it from the old
one, so a blob being moved is always found — and a reader whose blob moves while it
reads carries on from the other store. Blobs are never served by hash alone: the API
finds them through a message the caller may see
(``bccd.mailstore.attachments.attachment_for_user``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from sqlalchemy.orm import Session

from bccd.config import Settings
from bccd.private import private_dirs
from bccd.store import dbblobs
from bccd.store.db import Database

GC_PREFIX = ".gc-"  # the garbage collector's private names: .gc-<sha256>-<random>


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        try:
            # refresh mtime so a concurrent GC pass (which spares young blobs) keeps it;
            # see bccd.lifecycle.blobgc for why this makes the race impossible
            os.utime(target)
            return digest
        except FileNotFoundError:
            pass  # absent, or a GC pass moved it away this instant: write it (again)
        private_dirs(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return digest

    def get(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()

    def open(self, sha256: str) -> BinaryIO:
        """The blob opened for reading (an open file survives a collector's rename or
        unlink: a download that has started finishes)."""
        path = self.path(sha256)
        for _ in range(3):
            try:
                return open(path, "rb")  # noqa: SIM115 - the caller closes it
            except FileNotFoundError:
                pass
            # a collector may hold it under a private name for a moment while it checks
            # for new references (bccd.lifecycle.blobgc): the content is the same
            for held in path.parent.glob(f"{GC_PREFIX}{sha256}-*"):
                try:
                    return open(held, "rb")  # noqa: SIM115
                except FileNotFoundError:
                    continue
        raise FileNotFoundError(str(path))

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False


Kind = Literal["database", "fs"]
READ_SIZE = dbblobs.CHUNK_SIZE  # what a reader hands out at a time, from either store


class BlobMissing(FileNotFoundError):
    """No store holds the blob."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``Blobs.prepare`` made ready for filing: the attachments' digests, in order,
    and whether their bytes still have to be written — into the database, by the filing
    transaction itself (``in_database``); otherwise they are durable files already."""

    digests: tuple[str, ...]
    in_database: bool


class Blobs:
    """The configured store for new blobs (``kind``) and reads from either store."""

    def __init__(self, kind: Kind, files: BlobStore) -> None:
        self.kind: Kind = kind
        self.files = files

    @classmethod
    def of(cls, settings: Settings) -> Blobs:
        return cls(settings.blob_store, BlobStore(settings.blob_dir))

    @classmethod
    def wrap(cls, blobs: Blobs | BlobStore) -> Blobs:
        """``blobs``, or a bare file store as the configured store (``fs``)."""
        return blobs if isinstance(blobs, Blobs) else cls("fs", blobs)

    @property
    def in_database(self) -> bool:
        return self.kind == "database"

    def _order(self) -> tuple[Kind, Kind, Kind]:
        other: Kind = "fs" if self.kind == "database" else "database"
        return self.kind, other, self.kind

    def prepare(self, datas: Sequence[bytes]) -> Prepared:
        """``fs``: write (and fsync) each blob now, before the transaction that names it;
        ``database``: only the digests — the bytes go in with the message."""
        if self.in_database:
            return Prepared(tuple(hashlib.sha256(d).hexdigest() for d in datas), True)
        return Prepared(tuple(self.files.put(d) for d in datas), False)

    def get(self, session: Session, digest: str) -> bytes:
        """The whole blob, from whichever store holds it (``BlobMissing`` if none does)."""
        for kind in self._order():
            if kind == "fs":
                try:
                    return self.files.get(digest)
                except FileNotFoundError:
                    continue
            data = dbblobs.read(session, digest)
            if data is not None:
                return data
        raise BlobMissing(digest)

    def open(self, db: Database, digest: str) -> BlobReader:
        """A reader of the blob (blocking: call it in a database thread); ``BlobMissing``
        when no store holds it."""
        reader = BlobReader(self, db, digest)
        reader.find(0)
        return reader


class BlobReader:
    """One blob, read ``READ_SIZE`` bytes at a time with ``read_chunk`` (blocking) — from
    an open file, or one database chunk per call, each in a short read-only transaction
    (a slow download holds no connection between chunks). If the blob moves to the other
    store while it is read, reading goes on there from the same offset; if it is deleted
    (its last message was deleted meanwhile), ``read_chunk`` raises ``BlobMissing``."""

    def __init__(self, blobs: Blobs, db: Database, digest: str) -> None:
        self.blobs, self.db, self.digest = blobs, db, digest
        self.size = 0
        self.offset = 0
        self._file: BinaryIO | None = None
        self._chunk_size = 0        # reading from the database when > 0

    def find(self, offset: int) -> None:
        """Look for the blob (configured store, the other, the configured again) and
        position the reader at ``offset``."""
        self.close()
        for kind in self.blobs._order():
            if kind == "fs":
                try:
                    f = self.blobs.files.open(self.digest)
                except FileNotFoundError:
                    continue
                self._file, self.size = f, os.fstat(f.fileno()).st_size
                f.seek(offset)
                break
            with self.db.read_only() as s:
                where = dbblobs.locate(s, self.digest)
            if where is not None:
                self.size, self._chunk_size = where
                break
        else:
            raise BlobMissing(self.digest)
        self.offset = offset

    def read_chunk(self) -> bytes:
        """The next bytes (at most ``READ_SIZE``), ``b""`` at the end."""
        if self.offset >= self.size:
            return b""
        data = b""
        for _ in range(3):
            if self._file is not None:
                data = self._file.read(READ_SIZE)
                break
            n, skip = divmod(self.offset, self._chunk_size)
            with self.db.read_only() as s:
                got = dbblobs.chunk(s, self.digest, n)
            if got is not None:
                data = got[skip:skip + READ_SIZE]
                break
            self.find(self.offset)  # moved to the other store, or deleted, while we read
        if not data:
            raise BlobMissing(self.digest)  # shorter than its size: never for a whole blob
        self.offset += len(data)
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._chunk_size = 0
