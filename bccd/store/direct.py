"""Hot-path statements run on the DBAPI cursor, compiled by SQLAlchemy once.

``execute(conn, stmt, params)`` does what ``conn.execute(stmt, params)`` does for the
statements of the filing path, at a fraction of the cost: SQLAlchemy still builds and
compiles every statement (for the connection's dialect, with the INSERT columns the
parameters name), and its types still convert every value in and out — but the per-call
machinery around the cursor (execution context, compiled-cache lookup, parameter
construction, result metadata) is done once per form instead of once per call. On the
IMAP sync that machinery was a third of the time spent holding the GIL; SQLAlchemy's own
performance notes show the same gap between Core execution and the raw cursor.

What it keeps from ``Connection.execute``:

* the transaction: the statement runs on the DBAPI connection of ``conn``, inside
  whatever transaction (or savepoint) ``conn`` has begun;
* Python-side column defaults (``default=utcnow``) of INSERT columns the parameters
  leave out, evaluated per row;
* errors: a DBAPI error is raised as SQLAlchemy's wrapper (``IntegrityError``,
  ``OperationalError`` … with ``.orig``), and a lost connection is invalidated;
* results: rows with attribute access (``row.id``), in ``Rows`` with the few methods of
  ``Result`` that callers use (``all``, ``one``, ``first``, ``scalar``, ``scalar_one``,
  ``scalars``).

Several rows of a plain INSERT (no RETURNING) on PostgreSQL are one statement, ``INSERT …
SELECT unnest(%(a)s::T[]), unnest(%(b)s::U[]) …`` with a column's values as one array
parameter (``_unnest``): psycopg runs an executemany as a pipeline, whose set-up and sync
cost more than the statement — 106–150 µs of client CPU for three rows, against 61–80 µs
as one statement. Strings go as ``TEXT[]`` (a cast to ``VARCHAR(n)[]`` would cut a longer
value, where the column refuses it). Columns of other types than integers, strings,
booleans and timestamps (JSON, binary, enums), SQL-side defaults and a statement with its
own ``.values()`` keep the executemany.

What it does not do: a statement (form) with expanding or callable bind parameters,
SQL-expression or sequence defaults, ``onupdate`` values, or RETURNING with several
parameter sets runs through ``conn.execute`` instead, every time (logged once, at debug, as
``direct_fallback``). The hot statements avoid them: constant ``IN`` lists are written as
separate literals (``literals``). Listeners of the engine's ``before_cursor_execute``
event are called (with no execution context); no other execution event is.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    Integer,
    String,
    Text,
    TypeDecorator,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound, SQLAlchemyError

from bccd.log import get_logger

log = get_logger("bccd.store")

_MISSING = object()
_SQLALCHEMY = "<through Connection.execute>"   # the form of a statement this does not run
_CURSOR = "bccd.direct.cursor"                  # the connection's reused cursor (``_cursor``)


class _Unsupported(Exception):
    """A statement (form) that ``Connection.execute`` runs instead."""


Processor = Callable[[Any], Any] | None


class Rows(list[Any]):
    """The rows of one statement (a list), with the ``Result`` methods callers use."""

    def all(self) -> Rows:
        return self

    def first(self) -> Any:
        return self[0] if self else None

    def one(self) -> Any:
        if len(self) != 1:
            if not self:
                raise NoResultFound("No row was found when one was required")
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self[0]

    def scalar(self) -> Any:
        return self[0][0] if self else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [r[0] for r in self]


@dataclass(slots=True)
class _Slot:
    name: str
    processor: Processor
    constant: Any = _MISSING                     # a bound literal of the statement
    default: Callable[[], Any] | None = None     # a Python-side column default


@dataclass(slots=True)
class _Form:
    """One statement compiled for one dialect and one set of parameter names."""
    sql: str
    positional: bool
    slots: list[_Slot]
    binds: tuple[str, ...]                       # the slots' names, in order
    returns_rows: bool
    names: tuple[str, ...]                       # the result columns (row attributes)
    types: list[Any]                             # their SQLAlchemy types
    row: Any = None                              # the row class, made at the first result
    results: list[Processor] | None = None       # result processors, idem
    # several rows as one statement of arrays (``_unnest``): each column's name, and its
    # Python-side default when the rows leave it out
    columns: tuple[tuple[str, Callable[[], Any] | None], ...] | None = None


_FORMS: dict[tuple[Any, str, tuple[str, ...], bool], _Form] = {}
MAX_FORMS = 4096    # a statement built anew per call (meant to be a constant) would grow
                    # the cache forever: it is emptied instead, with a warning


def literals(values: Sequence[Any]) -> list[Any]:
    """A constant list for ``column.in_(…)`` as one bound literal each: compiled once,
    where a plain list would be an expanding parameter, rendered at every execution."""
    return [literal(v) for v in values]


def column_default(column: Any) -> Callable[[], Any]:
    """The column's Python-side default as a call of no arguments (raises ``_Unsupported``
    for a SQL-side or sequence default)."""
    d = column.default
    if d is None or not (d.is_scalar or d.is_callable):
        raise _Unsupported(f"column {column.key}: a default that is not a Python value")
    if d.is_scalar:
        value = d.arg
        return lambda: value
    fn = d.arg                                   # SQLAlchemy's wrapper takes a context
    return lambda: fn(None)


def _compile(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
    compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys))
    if compiled.update_prefetch:
        raise _Unsupported("onupdate defaults")
    prefetch = {c.key: c for c in compiled.insert_prefetch}
    given = set(keys)
    # positional: in SQL order; named: the names the SQL uses (``binds`` also holds
    # templates of anonymous names)
    order = compiled.positiontup if compiled.positional else \
        list(dict.fromkeys(compiled.bind_names.values()))
    slots = []
    for name in order:
        bp = compiled.binds[name]
        if bp.expanding or bp.callable is not None or bp.literal_execute:
            raise _Unsupported(f"bind parameter {name} is expanding, callable or literal")
        proc = bp.type.dialect_impl(dialect).bind_processor(dialect)
        slot = _Slot(name, proc)
        if name in prefetch:
            slot.default = column_default(prefetch[name])
        elif name not in given:
            if bp.required:
                raise _Unsupported(f"no value for bind parameter {name}")
            slot.constant = proc(bp.value) if proc is not None else bp.value
        slots.append(slot)
    cols = list(stmt.exported_columns) if hasattr(stmt, "exported_columns") else []
    return _Form(compiled.string, compiled.positional, slots, tuple(s.name for s in slots),
                 bool(cols), tuple(c.key for c in cols), [c.type for c in cols])


_ARRAY_ELEMENTS = (Integer, String, Boolean, DateTime)   # what psycopg adapts in arrays


def _unnest(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Form | None:
    """PostgreSQL: the form that inserts several rows of ``stmt`` in one statement (module
    docstring), or ``None`` where the executemany stays."""
    table = getattr(stmt, "table", None)
    if dialect.name != "postgresql" or not getattr(stmt, "is_insert", False) or table is None \
            or not set(keys) <= set(table.c.keys()):
        return None
    cols: list[tuple[Any, Callable[[], Any] | None]] = [(table.c[k], None) for k in keys]
    for c in table.columns:
        if c.key not in keys and c.default is not None:
            try:
                cols.append((c, column_default(c)))
            except _Unsupported:                 # a SQL default: rendered per row only there
                return None
    elements = []
    for c, _ in cols:
        decorated = isinstance(c.type, TypeDecorator)
        t = c.type.impl_instance if decorated else c.type
        if not isinstance(t, _ARRAY_ELEMENTS) or isinstance(t, Enum) \
                or (decorated and isinstance(t, String)):
            return None
        # strings as TEXT[]: a cast to VARCHAR(n)[] would cut a longer value silently, where
        # the column's own assignment refuses it
        elements.append(Text() if isinstance(t, String) else c.type)
    arrays = select(*(func.unnest(bindparam(c.key, type_=ARRAY(e)))
                      for (c, _), e in zip(cols, elements, strict=True)))
    names = tuple(c.key for c, _ in cols)
    try:
        form = _compile(stmt.from_select(names, arrays, include_defaults=False), dialect, names)
    except (_Unsupported, SQLAlchemyError):      # e.g. a statement that has its .values()
        return None                              # the executemany may still run here
    if form.returns_rows:
        return None
    form.columns = tuple((c.key, d) for c, d in cols)
    return form


def _form(stmt: Any, dialect: Dialect, keys: tuple[str, ...], many: bool) -> _Form:
    try:
        form = (_unnest(stmt, dialect, keys) if many else None) or _compile(stmt, dialect, keys)
        if many and form.returns_rows:
            raise _Unsupported("RETURNING with several parameter sets")
    except _Unsupported as exc:
        log.debug("direct_fallback", reason=str(exc), sql=str(stmt.compile(dialect=dialect))[:200])
        return _Form(_SQLALCHEMY, False, [], (), False, (), [])
    return form


def _values(form: _Form, params: Mapping[str, Any]) -> Any:
    out: list[Any] = []
    for s in form.slots:
        if s.constant is not _MISSING:
            out.append(s.constant)
            continue
        v = s.default() if s.default is not None else params[s.name]
        out.append(s.processor(v) if s.processor is not None else v)
    return out if form.positional else dict(zip(form.binds, out, strict=True))


def _result_shape(form: _Form, dialect: Dialect, description: Any) -> None:
    results = [t.dialect_impl(dialect).result_processor(dialect, d[1])
               for t, d in zip(form.types, description, strict=True)]
    # the row class first: another thread may be reading ``results`` as the sign of both
    form.row = namedtuple("Row", form.names, rename=True)  # type: ignore[misc]
    form.results = results


def _cursor(fairy: Any) -> Any:
    """The DBAPI connection's cursor for these statements: made once per connection and
    reused (a new psycopg cursor per statement cost about 11 µs of the 43 µs a statement
    takes), kept in the pool's per-connection ``info``, which SQLAlchemy empties when the
    connection is invalidated. Every statement here reads its rows to the end before the
    next one runs on it."""
    info = fairy.info
    cursor = info.get(_CURSOR)
    if cursor is None:
        cursor = info[_CURSOR] = fairy.dbapi_connection.cursor()
    return cursor


def execute(conn: Connection, stmt: Any,
            params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> Rows:
    """``conn.execute(stmt, params)`` on the DBAPI cursor (see the module docstring); a
    list of parameter sets is an executemany (no rows back)."""
    many = isinstance(params, Sequence)
    if many and not params:
        return Rows()
    sets: Sequence[Mapping[str, Any]] = params if many else (params or {},)  # type: ignore[assignment]
    dialect = conn.dialect
    keys = tuple(sets[0])
    key = (stmt, dialect.name, keys, many)
    form = _FORMS.get(key)
    if form is None:
        if len(_FORMS) >= MAX_FORMS:
            log.warning("direct_forms_full", forms=len(_FORMS))
            _FORMS.clear()
        form = _FORMS[key] = _form(stmt, dialect, keys, many)
    if form.sql is _SQLALCHEMY:
        result = conn.execute(stmt, params)
        return Rows(result.all()) if result.returns_rows else Rows()
    if form.columns is not None:                 # several rows, one statement
        many = False
        args = _values(form, {name: [p[name] for p in sets] if default is None
                              else [default() for _ in sets]
                              for name, default in form.columns})
    else:
        args = [_values(form, p) for p in sets] if many else _values(form, sets[0])
    fairy: Any = conn.connection
    dbapi_conn: Any = fairy.dbapi_connection
    cursor = _cursor(fairy)
    dispatch: Any = conn.dispatch
    if dispatch.before_cursor_execute:
        for fn in dispatch.before_cursor_execute:
            fn(conn, cursor, form.sql, args, None, many)
    try:
        if many:
            cursor.executemany(form.sql, args)
            return Rows()
        cursor.execute(form.sql, args)
        if not form.returns_rows:
            return Rows()
        raw = cursor.fetchall()
        if form.results is None:
            _result_shape(form, dialect, cursor.description)
    except dialect.loaded_dbapi.Error as exc:
        fairy.info.pop(_CURSOR, None)  # a fresh cursor for the next statement
        lost = dialect.is_disconnect(exc, dbapi_conn, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(form.sql, args, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost, dialect=dialect) from exc
    make, procs = form.row, form.results
    assert procs is not None
    if not any(procs):
        return Rows(make._make(r) for r in raw)
    return Rows(make._make([v if p is None else p(v) for p, v in zip(procs, r, strict=True)])
                for r in raw)
