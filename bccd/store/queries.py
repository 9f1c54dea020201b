"""Small query helpers shared by the layers: dialect-aware insert-or-ignore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bccd.store.models import Base


def insert_ignore(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING — the constraint decides, not a prior SELECT."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    table: Any = model.__table__
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(list(rows)).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).values(list(rows)).on_conflict_do_nothing()
    session.execute(stmt)
