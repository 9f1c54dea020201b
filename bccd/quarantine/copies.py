"""What the quarantine holds: listing for people, loading and marking released for the
release job (``bccd.ingest.holding``), and purging past ``retention.quarantine``.

Blocking functions; callers on the event loop use ``Database.run``.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bccd.store.db import Database
from bccd.store.models import Alternate, Quarantined, utcnow
from bccd.store.queries import delete_older_than


@dataclass(frozen=True, slots=True)
class HeldCopy:
    id: int
    user_id: int
    from_addr: str
    subject: str
    size: int
    received_at: dt.datetime
    released_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "from": self.from_addr, "subject": self.subject, "size": self.size,
                "received_at": self.received_at.isoformat(),
                "status": "released" if self.released_at else "held",
                "released_at": self.released_at.isoformat() if self.released_at else None}


def list_copies(session: Session, user_id: int) -> list[HeldCopy]:
    rows = session.execute(
        select(Quarantined.id, Quarantined.user_id, Quarantined.from_addr, Quarantined.subject,
               func.length(Quarantined.raw), Quarantined.created_at, Quarantined.released_at)
        .where(Quarantined.user_id == user_id)
        .order_by(Quarantined.id)
    ).all()
    return [HeldCopy(r[0], r[1], r[2], r[3], int(r[4] or 0), r[5], r[6]) for r in rows]


@dataclass(frozen=True, slots=True)
class Stored:
    """One held copy as the release job needs it."""

    id: int
    user_id: int
    raw: bytes
    auth: dict[str, Any]
    released: bool


def load(db: Database, qid: int) -> Stored | None:
    with db.read() as s:
        row = s.get(Quarantined, qid)
        if row is None:
            return None
        return Stored(row.id, row.user_id, row.raw, dict(row.auth), row.released_at is not None)


def mark_released(db: Database, qid: int, now: dt.datetime) -> bool:
    """Conditional: True for the one caller that marked it."""
    with db.transaction() as s:
        res = s.execute(update(Quarantined)
                        .where(Quarantined.id == qid, Quarantined.released_at.is_(None))
                        .values(released_at=now))
        return getattr(res, "rowcount", 0) == 1


def releasable(db: Database, user_id: int, address: str) -> list[int]:
    """The copies held from ``address`` while it is a confirmed alternate of the user."""
    with db.read() as s:
        confirmed = s.scalar(select(Alternate.id).where(
            Alternate.user_id == user_id, Alternate.email == address,
            Alternate.status == "confirmed"))
        if confirmed is None:
            return []
        return list(s.scalars(
            select(Quarantined.id)
            .where(Quarantined.user_id == user_id, Quarantined.from_addr == address,
                   Quarantined.released_at.is_(None))
            .order_by(Quarantined.id)))


def purge_expired(db: Database, retention_seconds: int, *, now: dt.datetime | None = None,
                  batch: int = 500, stop: threading.Event | None = None) -> int:
    """Delete copies received more than ``retention_seconds`` ago; returns how many
    (``stop``: end between batches)."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=retention_seconds)
    return delete_older_than(db, Quarantined, Quarantined.created_at, cutoff, batch=batch,
                             stop=stop)
