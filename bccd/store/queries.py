"""Small query helpers shared by the layers: dialect-aware insert-or-ignore, batched purge.

The statements are built once per (dialect, table, RETURNING columns) and executed with the
rows as parameters (executemany), so SQLAlchemy's compiled cache serves every later call —
a ``.values([...])`` multi-row statement would be compiled anew each time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bccd.store.db import Database
from bccd.store.models import Base

_STATEMENTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def _statement(dialect: str, model: type[Base], returning: tuple[str, ...] = ()) -> Any:
    key = (dialect, model.__tablename__, returning)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        table: Any = model.__table__
        ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        stmt = ins.on_conflict_do_nothing()
        if returning:
            stmt = stmt.returning(*(table.c[c] for c in returning))
        _STATEMENTS[key] = stmt
    return stmt


def insert_ignore(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING — the constraint decides, not a prior SELECT."""
    if not rows:
        return
    stmt = _statement(session.get_bind().dialect.name, model)
    session.execute(stmt, list(rows) if len(rows) > 1 else dict(rows[0]))


def insert_ignore_returning(session: Session, model: type[Base], row: dict[str, Any],
                            *columns: str) -> Any:
    """One row, INSERT … ON CONFLICT DO NOTHING RETURNING ``columns``: the inserted row's
    values, or ``None`` when the constraint kept an existing row. Runs on the session's
    connection (no autoflush: the caller has no pending ORM changes it depends on)."""
    stmt = _statement(session.get_bind().dialect.name, model, tuple(columns))
    return session.connection().execute(stmt, row).first()


def insert_ignore_many_returning(session: Session, model: type[Base],
                                 rows: Sequence[dict[str, Any]], *columns: str) -> list[Any]:
    """Several rows, INSERT … ON CONFLICT DO NOTHING RETURNING ``columns``: the rows that
    were inserted (those the constraint refused are absent), in no particular order."""
    if not rows:
        return []
    stmt = _statement(session.get_bind().dialect.name, model, tuple(columns))
    conn = session.connection()
    if len(rows) == 1:
        return list(conn.execute(stmt, dict(rows[0])).all())
    return list(conn.execute(stmt, list(rows)).all())


def delete_older_than(db: Database, model: Any, created: Any, cutoff: dt.datetime, *, batch: int) -> int:
    """Delete ``model`` rows whose ``created`` column is before ``cutoff``, ``batch`` rows per
    transaction (a long purge never holds the writer for long); returns how many."""
    total = 0
    while True:
        with db.transaction() as s:
            ids = list(s.scalars(select(model.id).where(created < cutoff)
                                 .order_by(model.id).limit(batch)))
            if ids:
                s.execute(delete(model).where(model.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            return total
