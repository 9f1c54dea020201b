"""Small query helpers shared by the layers: dialect-aware insert-or-ignore, fixed-form
``IN`` lists, batched purge.

The statements are built once per (dialect, table, RETURNING columns) and executed with the
rows as parameters (executemany), so each is compiled once — a ``.values([...])``
multi-row statement would be compiled anew each time. They run on the session's connection
through ``store.direct`` (the DBAPI cursor; several rows with RETURNING go through
SQLAlchemy's insertmanyvalues): a Core insert executed through ``Session.execute`` does not
autoflush either, it only costs the ORM's dispatch.

``domain_list(column)`` is an aggregate: the distinct domains of the addresses in
``column``, comma-separated (``group_concat`` on SQLite, ``string_agg`` on PostgreSQL).

``address_locks(session, company_id, emails, shared=…)`` (PostgreSQL; nothing on SQLite,
whose writers take turns): transaction-scoped advisory locks on a company's addresses —
shared by a copy that links an address no person has yet, exclusive by a transaction that
gives a person that address (``crm``), so the two never pass each other unseen
(``linking.engine``).

``FixedIn`` is the same idea for ``column IN (…)`` on the hot path: an expanding parameter
is rendered into the SQL on every execution; a list padded to one of a few sizes (repeating
its last value — the answer is the same) is a statement compiled once per size.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, String, bindparam, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from bccd.store import direct
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
    direct.execute(session.connection(), stmt, list(rows) if len(rows) > 1 else rows[0])


def insert_ignore_returning(session: Session, model: type[Base], row: dict[str, Any],
                            *columns: str) -> Any:
    """One row, INSERT … ON CONFLICT DO NOTHING RETURNING ``columns``: the inserted row's
    values, or ``None`` when the constraint kept an existing row. Runs on the session's
    connection (no autoflush: the caller has no pending ORM changes it depends on)."""
    stmt = _statement(session.get_bind().dialect.name, model, tuple(columns))
    return direct.execute(session.connection(), stmt, row).first()


def insert_ignore_many_returning(session: Session, model: type[Base],
                                 rows: Sequence[dict[str, Any]], *columns: str) -> list[Any]:
    """Several rows, INSERT … ON CONFLICT DO NOTHING RETURNING ``columns``: the rows that
    were inserted (those the constraint refused are absent), in no particular order."""
    if not rows:
        return []
    stmt = _statement(session.get_bind().dialect.name, model, tuple(columns))
    conn = session.connection()
    if len(rows) == 1:
        return direct.execute(conn, stmt, rows[0])
    return list(conn.execute(stmt, list(rows)).all())


# one row per key, in the array's order (sorted: two transactions never wait in a cycle)
_ADDRESS_LOCKS = {
    True: text("SELECT count(pg_advisory_xact_lock_shared(k))"
               " FROM unnest(CAST(:keys AS bigint[])) AS k"),
    False: text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"),
}


def address_key(company_id: int, email: str) -> int:
    """The advisory-lock key of one address of one company (a signed 64-bit integer; two
    addresses that share one only wait for each other)."""
    digest = hashlib.blake2b(f"{company_id}\0{email}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def address_locks(session: Session, company_id: int, emails: Sequence[str], *,
                  shared: bool) -> None:
    """PostgreSQL: lock these addresses of the company until the transaction ends (module
    docstring); nothing elsewhere."""
    if emails and session.get_bind().dialect.name == "postgresql":
        keys = sorted({address_key(company_id, e) for e in emails})
        session.connection().execute(_ADDRESS_LOCKS[shared], {"keys": keys})


class FixedIn:
    """A statement with one ``column IN (…)`` list, in fixed forms.

    ``build(in_clause)`` makes the statement around ``column IN (:name0, …)``; a list of n
    values uses the form for the next power of two ≥ n, padded with its last value, so a
    handful of forms are compiled (once each) instead of one rendering per execution.
    ``stmt, params = fixed(values)`` → execute ``stmt`` with ``params`` (plus the
    statement's other parameters). ``values`` must not be empty."""

    def __init__(self, column: ColumnElement[Any], name: str,
                 build: Callable[[ColumnElement[bool]], Any]) -> None:
        self._column, self._name, self._build = column, name, build
        self._forms: dict[int, tuple[Any, tuple[str, ...]]] = {}

    def _form(self, size: int) -> tuple[Any, tuple[str, ...]]:
        form = self._forms.get(size)
        if form is None:
            names = tuple(f"{self._name}{i}" for i in range(size))
            binds: list[BindParameter[Any]] = [bindparam(n, type_=self._column.type)
                                               for n in names]
            form = self._forms[size] = (self._build(self._column.in_(binds)), names)
        return form

    def __call__(self, values: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        n = len(values)
        if not n:
            raise ValueError("FixedIn needs at least one value")
        stmt, names = self._form(1 << (n - 1).bit_length())
        last = values[-1]
        return stmt, {name: values[i] if i < n else last for i, name in enumerate(names)}


def delete_older_than(db: Database, model: Any, created: Any, cutoff: dt.datetime, *, batch: int,
                      stop: threading.Event | None = None) -> int:
    """Delete ``model`` rows whose ``created`` column is before ``cutoff``, ``batch`` rows per
    transaction (a long purge never holds the writer for long); returns how many. ``stop``
    ends it between batches (the rest goes in the next pass)."""
    total = 0
    while not (stop is not None and stop.is_set()):
        with db.transaction() as s:
            ids = list(s.scalars(select(model.id).where(created < cutoff)
                                 .order_by(model.id).limit(batch)))
            if ids:
                s.execute(delete(model).where(model.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            break
    return total


class domain_list(FunctionElement[str]):  # noqa: N801 - an SQL function, named as one
    """The distinct domains of an address column, comma-separated (an aggregate)."""

    type = String()
    name = "domain_list"
    inherit_cache = True


@compiles(domain_list, "sqlite")
def _domain_list_sqlite(element: domain_list, compiler: Any, **kw: Any) -> str:
    col = compiler.process(element.clauses, **kw)
    return f"group_concat(DISTINCT substr({col}, instr({col}, '@') + 1))"


@compiles(domain_list, "postgresql")
def _domain_list_postgresql(element: domain_list, compiler: Any, **kw: Any) -> str:
    col = compiler.process(element.clauses, **kw)
    return f"string_agg(DISTINCT split_part({col}, '@', 2), ',')"
