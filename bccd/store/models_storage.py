"""Tables of storage and coordination rather than of the mail domain: attachment bytes
in the database (``blobs``, ``blob_chunks``; ``bccd.store.dbblobs``) and the leases of
the periodic passes (``periodic_passes``; ``bccd.store.leases``). ``bccd.store.models``
imports this module, so ``Base.metadata`` always holds these tables."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from bccd.store.models import Base, utcnow


class Blob(Base):
    """An attachment's bytes in the database (``storage.blobs = "database"``), stored once
    per content: this row names the content (``attachments.sha256`` refers to it by value,
    without a foreign key, because a blob may live in the file store instead) and the
    ``blob_chunks`` rows hold it, ``chunk_size`` bytes each."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"
    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PeriodicPass(Base):
    """Who runs a periodic pass now (``owner`` until ``lease_until``) and when it last
    completed: with several instances each pass runs once per interval, by one of them."""

    __tablename__ = "periodic_passes"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[dt.datetime | None]
    done_at: Mapped[dt.datetime | None]
