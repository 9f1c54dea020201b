"""What a deletion removes, derived from the schema rather than listed by hand.

``cascade_counts(session, table, where)`` → ``{table name: rows}`` for the rows that
deleting ``table`` rows matching ``where`` removes, following every ``ON DELETE CASCADE``
foreign key of ``Base.metadata`` (so a table added later is counted, and removed, without
a change here). Deletions themselves are single ``DELETE`` statements on the root rows:
the database's cascades do the rest, inside the caller's transaction.

``mentions(payload, …)`` decides whether a JSON document (an outbox job payload) refers
to given users, IMAP accounts or addresses; ``outbox_jobs_mentioning`` applies it.

``transaction(db, dry_run=…)`` is ``Database.transaction`` that rolls back instead of
committing for a dry run, so ``--dry-run`` reports exactly what the real run would do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, delete, false, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bccd.store.db import Database
from bccd.store.models import Attachment, Base, Message, OutboxJob

T = TypeVar("T")
CHUNK = 500  # ids per IN (…) list: well below SQLite's and PostgreSQL's parameter limits


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@contextlib.contextmanager
def transaction(db: Database, *, dry_run: bool = False) -> Iterator[Session]:
    """One transaction: committed on success (rolled back on error, or for a dry run)."""
    with db.read() as session:
        yield session
        if dry_run:
            session.rollback()
        else:
            session.commit()


def table(name: str) -> Table:
    return Base.metadata.tables[name]


def cascade_counts(session: Session, root: Table, where: ColumnElement[bool]) -> dict[str, int]:
    """Rows removed, per table, by deleting the ``root`` rows matching ``where``."""
    conds: dict[str, ColumnElement[bool]] = {root.name: where}
    for t in Base.metadata.sorted_tables:  # parents before children
        if t.name == root.name:
            continue
        parts = []
        for fk in t.foreign_keys:
            parent = fk.column.table
            if (fk.ondelete or "").upper() != "CASCADE" or parent.name not in conds:
                continue
            parts.append(fk.parent.in_(select(fk.column).where(conds[parent.name])))
        if parts:
            conds[t.name] = or_(*parts)
    out: dict[str, int] = {}
    for name, cond in conds.items():
        n = session.scalar(select(func.count()).select_from(table(name)).where(cond)) or 0
        if n:
            out[name] = int(n)
    return out


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for k, v in more.items():
        if v:
            total[k] = total.get(k, 0) + v
    return total


def attachment_digests(session: Session, message_filter: ColumnElement[bool]) -> set[str]:
    """The blob digests of the attachments of the messages matching ``message_filter``."""
    q = (select(Attachment.sha256).distinct()
         .join(Message, Message.id == Attachment.message_id).where(message_filter))
    return set(session.scalars(q))


def mentions(payload: Any, *, user_ids: Collection[int] = (), account_ids: Collection[int] = (),
             addresses: Collection[str] = ()) -> bool:
    """Does this JSON value name one of the users or accounts, or hold one of the addresses?"""
    if isinstance(payload, dict):
        for k, v in payload.items():
            if k == "user_id" and isinstance(v, int) and v in user_ids:
                return True
            if k == "account_id" and isinstance(v, int) and v in account_ids:
                return True
            if mentions(v, user_ids=user_ids, account_ids=account_ids, addresses=addresses):
                return True
        return False
    if isinstance(payload, list):
        return any(mentions(v, user_ids=user_ids, account_ids=account_ids, addresses=addresses)
                   for v in payload)
    if isinstance(payload, str) and addresses:
        low = payload.lower()
        return any(a in low for a in addresses)
    return False


def outbox_jobs_mentioning(session: Session, *, user_ids: Collection[int] = (),
                           account_ids: Collection[int] = (),
                           addresses: Collection[str] = ()) -> list[int]:
    """Outbox jobs (any state) whose payload refers to these users, accounts or addresses.

    Payloads are JSON of several shapes (mail, webhooks, write-back, release jobs), so
    they are read and matched here rather than in SQL; the outbox is kept short by its
    own purge, so this scan stays small.
    """
    addrs = [a.lower() for a in addresses]
    found = []
    rows = session.execute(select(OutboxJob.id, OutboxJob.payload).order_by(OutboxJob.id)
                           .execution_options(yield_per=CHUNK))
    for job_id, payload in rows:
        if mentions(payload, user_ids=user_ids, account_ids=account_ids, addresses=addrs):
            found.append(int(job_id))
    return found


def delete_ids(session: Session, model: type[Base], ids: Iterable[int]) -> int:
    """Delete rows by primary key ``id`` in chunks; returns how many were named."""
    ids = sorted(set(ids))
    col: Any = model.__table__.c.id
    for part in chunks(ids):
        session.execute(delete(model).where(col.in_(part)))
    return len(ids)


def in_ids(column: Any, ids: Collection[int]) -> ColumnElement[bool]:
    return column.in_(sorted(ids)) if ids else false()
