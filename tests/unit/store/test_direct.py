"""``store.direct``: hot-path statements on the DBAPI cursor give what ``Connection.execute``
gives — the same stored values and rows, the column defaults, SQLAlchemy's errors, the
caller's transaction — on both engines."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, text, union_all, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    MultipleResultsFound,
    NoResultFound,
)

from bccd.store import direct, queries
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Company, Link, Message, MessageRaw, Participant, Thread, User

_C, _U, _T, _M = Company.__table__, User.__table__, Thread.__table__, Message.__table__
_NEW_COMPANY = insert(Company).returning(Company.id)
_NEW_THREAD = insert(Thread).returning(Thread.id)
_NEW_MESSAGE = insert(Message).returning(Message.id)
_COMPANY = select(_C.c.id, _C.c.slug, _C.c.create_unknown_contacts, _C.c.created_at) \
    .where(_C.c.id == bindparam("c"))
_MESSAGE = select(_M).where(_M.c.id == bindparam("m"))


def _setup(db: Database) -> tuple[int, int, int]:
    """A company, a user and a thread, made through ``direct``."""
    with db.transaction() as s:
        conn = s.connection()
        cid = direct.execute(conn, _NEW_COMPANY, {"slug": "acme", "name": "Acme"}).scalar_one()
        uid = direct.execute(conn, insert(User).returning(User.id), {
            "company_id": cid, "email": "alice@acme.test", "api_token_hash": "h" * 64,
            "bcc_token": "t" * 16}).scalar_one()
        tid = direct.execute(conn, _NEW_THREAD, {
            "company_id": cid, "owner_id": uid, "subject": "Hi"}).scalar_one()
    return cid, uid, tid


def _message(cid: int, uid: int, tid: int, key: str, **extra: Any) -> dict[str, Any]:
    return {"company_id": cid, "user_id": uid, "thread_id": tid, "dedup_key": key,
            "message_id": f"<{key}@x>", "direction": "outgoing", "raw_sha256": "0" * 64,
            **extra}


def test_python_side_defaults_fill_the_columns_the_parameters_leave_out(
        function_db: Database) -> None:
    cid, _uid, tid = _setup(function_db)
    before = dt.datetime.now(dt.UTC)
    with function_db.transaction() as s:
        row = direct.execute(s.connection(), _COMPANY, {"c": cid}).one()
        thread = s.get(Thread, tid)
        assert thread is not None
    assert row.slug == "acme" and row.create_unknown_contacts is True   # default=True
    assert before - dt.timedelta(minutes=1) < row.created_at <= dt.datetime.now(dt.UTC)
    assert (thread.visibility, thread.archived, thread.manual_items) == ("private", False, False)


def test_values_read_back_the_same_as_through_sqlalchemy(function_db: Database) -> None:
    cid, uid, tid = _setup(function_db)
    when = dt.datetime(2026, 11, 27, 8, 30, 15, 123456, tzinfo=dt.UTC)
    auth = {"dmarc": "pass", "dkim": [{"d": "acme.test", "result": "pass"}], "n": 3}
    with function_db.transaction() as s:
        mid = direct.execute(s.connection(), _NEW_MESSAGE, _message(
            cid, uid, tid, "k1", subject="Grüße ✓", date=when, auth=auth,
            text_body="a\r\nb", raw_size=7)).scalar_one()
        direct.execute(s.connection(), insert(MessageRaw), {"message_id": mid, "raw": b"\x00\xff"})
    with function_db.read() as s:
        via_sqlalchemy = s.connection().execute(_MESSAGE, {"m": mid}).one()
        via_direct = direct.execute(s.connection(), _MESSAGE, {"m": mid}).one()
        raw = s.get(MessageRaw, mid)
        assert raw is not None
    assert tuple(via_direct) == tuple(via_sqlalchemy)
    assert via_direct.subject == "Grüße ✓" and via_direct.auth == auth
    assert via_direct.date == when and via_direct.text_body == "a\r\nb"
    assert via_direct.from_addr == "" and via_direct.raw_size == 7
    assert bytes(raw.raw) == b"\x00\xff"


def test_several_parameter_sets_are_one_executemany(function_db: Database) -> None:
    cid, uid, tid = _setup(function_db)
    with function_db.transaction() as s:
        direct.execute(s.connection(), insert(Message),
                       [_message(cid, uid, tid, f"m{i}") for i in range(5)])
    with function_db.read() as s:
        keys = direct.execute(s.connection(), select(_M.c.dedup_key).order_by(_M.c.id)).scalars()
    assert keys == [f"m{i}" for i in range(5)]


def test_several_rows_are_one_statement_with_defaults_per_row_and_conflicts_ignored(
        function_db: Database) -> None:
    """PostgreSQL runs them as one INSERT … SELECT unnest(…) (SQLite: one executemany): the
    same rows as through SQLAlchemy — a NULL kept, a left-out ``created_at`` filled, a row
    the constraint refuses skipped."""
    _cid, _uid, tid = _setup(function_db)
    when = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    rows = [{"thread_id": tid, "kind": "person", "entity_id": n, "how": "auto"}
            for n in (1, 2, 1)]
    seen: list[tuple[str, bool]] = []

    @event.listens_for(function_db.engine, "before_cursor_execute")
    def record(_conn: Any, _cur: Any, stmt: str, _p: Any, _ctx: Any, many: bool) -> None:
        if stmt.startswith("INSERT"):
            seen.append((stmt.split()[2], many))

    before = dt.datetime.now(dt.UTC)
    with function_db.transaction() as s:
        queries.insert_ignore(s, Link, rows)
        queries.insert_ignore(s, Link, [{**r, "entity_id": 3, "created_at": when}
                                        for r in rows[:2]])
        mid = direct.execute(s.connection(), _NEW_MESSAGE,
                             _message(_cid, _uid, tid, "p")).scalar_one()
        direct.execute(s.connection(), insert(Participant), [
            {"company_id": _cid, "message_id": mid, "role": role, "email": f"{role}@x.test",
             "person_id": None} for role in ("to", "cc")])
    many = function_db.is_sqlite                        # each list: one statement
    assert seen == [("links", many), ("links", many), ("messages", False),
                    ("participants", many)]
    with function_db.read() as s:
        links = s.execute(select(Link.entity_id, Link.created_at).order_by(Link.id)).all()
        people = s.execute(select(Participant.role, Participant.name, Participant.person_id)
                           .order_by(Participant.id)).all()
    assert [e for e, _ in links] == [1, 2, 3]
    assert before <= links[0][1] <= links[1][1] <= dt.datetime.now(dt.UTC)
    assert links[2][1] == when
    assert people == [("to", "", None), ("cc", "", None)]   # name: its default, ""


def test_a_value_too_long_for_its_column_is_refused_among_several_rows(pg_url: str) -> None:
    """PostgreSQL: one row of several over a column's length is an error, as for one row —
    never the value cut to fit (the arrays are TEXT[], not VARCHAR(n)[])."""
    upgrade(pg_url)
    db = Database(pg_url)
    try:
        _cid, _uid, tid = _setup(db)
        rows = [{"thread_id": tid, "kind": kind, "entity_id": 1, "how": "auto"}
                for kind in ("person", "p" * 17)]          # kind is VARCHAR(16)
        with pytest.raises(DataError), db.transaction() as s:
            direct.execute(s.connection(), insert(Link), rows)
        with db.read() as s:
            assert s.scalars(select(Link.kind)).all() == []
    finally:
        db.dispose()


def test_several_rows_of_a_statement_with_its_own_values_are_inserted(
        function_db: Database) -> None:
    _cid, _uid, tid = _setup(function_db)
    with function_db.transaction() as s:
        direct.execute(s.connection(), insert(Link).values(how="manual"),
                       [{"thread_id": tid, "kind": "person", "entity_id": n} for n in (1, 2)])
    with function_db.read() as s:
        assert s.execute(select(Link.entity_id, Link.how).order_by(Link.id)).all() == [
            (1, "manual"), (2, "manual")]


def test_a_constraint_violation_is_sqlalchemys_integrity_error(function_db: Database) -> None:
    _setup(function_db)
    with pytest.raises(IntegrityError) as err, function_db.transaction() as s:
        direct.execute(s.connection(), _NEW_COMPANY, {"slug": "acme", "name": "Again"})
    assert err.value.orig is not None
    with function_db.read() as s:
        assert direct.execute(s.connection(), select(_C.c.name)).scalars() == ["Acme"]


def test_after_a_refused_statement_the_transaction_goes_on_from_its_savepoint(
        function_db: Database) -> None:
    _setup(function_db)
    with function_db.transaction() as s:
        with pytest.raises(IntegrityError), s.begin_nested():
            direct.execute(s.connection(), _NEW_COMPANY, {"slug": "acme", "name": "Again"})
        conn = s.connection()
        new = direct.execute(conn, _NEW_COMPANY, {"slug": "beta", "name": "Beta"}).scalar_one()
        assert direct.execute(conn, _COMPANY, {"c": new}).one().slug == "beta"
    with function_db.read() as s:
        assert sorted(direct.execute(s.connection(), select(_C.c.slug)).scalars()) == [
            "acme", "beta"]


def test_statements_run_in_the_callers_transaction(function_db: Database) -> None:
    class Undo(Exception):
        pass

    cid, _uid, _tid = _setup(function_db)
    with pytest.raises(Undo), function_db.transaction() as s:
        direct.execute(s.connection(), update(Company).where(Company.id == bindparam("c"))
                       .values(name=bindparam("n")), {"c": cid, "n": "Renamed"})
        assert direct.execute(s.connection(), _COMPANY, {"c": cid}).one().slug == "acme"
        raise Undo
    with function_db.read() as s:
        assert s.scalar(select(Company.name)) == "Acme"


def test_literal_lists_and_unions_keep_their_values(function_db: Database) -> None:
    cid, _uid, tid = _setup(function_db)
    stmt = union_all(
        select(_T.c.id, _T.c.subject).where(_T.c.visibility.in_(direct.literals(["private", "x"]))),
        select(_C.c.id, _C.c.name).where(_C.c.id == bindparam("c")))
    with function_db.read() as s:
        rows = direct.execute(s.connection(), stmt, {"c": cid}).all()
    assert sorted((r.id, r.subject) for r in rows) == sorted([(tid, "Hi"), (cid, "Acme")])


def test_a_statement_it_cannot_run_goes_through_sqlalchemy(function_db: Database) -> None:
    cid, _uid, _tid = _setup(function_db)
    expanding = select(_C.c.slug).where(_C.c.id.in_(bindparam("ids", expanding=True)))
    with function_db.read() as s:
        assert direct.execute(s.connection(), expanding, {"ids": [cid, cid + 100]}).scalars() \
            == ["acme"]
        assert direct.execute(s.connection(), expanding, {"ids": [cid + 100]}).first() is None


def test_rows_answer_like_a_result(function_db: Database) -> None:
    cid, _uid, _tid = _setup(function_db)
    with function_db.read() as s:
        conn = s.connection()
        none = direct.execute(conn, _COMPANY, {"c": cid + 100})
        assert none.first() is None and none.scalar() is None and none.all() == []
        with pytest.raises(NoResultFound):
            none.one()
        two = direct.execute(conn, union_all(select(_C.c.id), select(_C.c.id)))
        with pytest.raises(MultipleResultsFound):
            two.scalar_one()
        assert direct.execute(conn, _COMPANY, {"c": cid}).one()._asdict()["slug"] == "acme"


def test_cursor_listeners_see_every_statement(function_db: Database) -> None:
    seen: list[str] = []

    @event.listens_for(function_db.engine, "before_cursor_execute")
    def record(_conn: Any, _cur: Any, stmt: str, *_a: Any) -> None:
        seen.append(stmt.split()[0].upper())

    _setup(function_db)
    assert seen.count("INSERT") == 3


def test_statements_built_per_call_do_not_grow_the_cache_forever(
        function_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "MAX_FORMS", 3)
    monkeypatch.setattr(direct, "_FORMS", {})
    cid, _uid, _tid = _setup(function_db)
    with function_db.read() as s:
        for _ in range(5):  # a new statement object each time
            assert direct.execute(s.connection(), select(_C.c.slug).where(
                _C.c.id == bindparam("c")), {"c": cid}).scalar_one() == "acme"
    assert len(direct._FORMS) <= 3


def test_no_parameter_sets_is_nothing_to_do(function_db: Database) -> None:
    with function_db.transaction() as s:
        assert direct.execute(s.connection(), insert(Company), []) == []


def test_a_lost_postgresql_connection_is_invalidated_and_the_next_transaction_works(
        pg_url: str) -> None:
    upgrade(pg_url)
    db = Database(pg_url)
    try:
        cid, _uid, _tid = _setup(db)
        with db.engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with db.engine.connect() as other:  # the server ends that session
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            with pytest.raises(DBAPIError) as err:
                direct.execute(conn, _COMPANY, {"c": cid})
            assert err.value.connection_invalidated and conn.invalidated
        with db.read() as s:  # the pool hands out a live connection, not the dead one
            assert direct.execute(s.connection(), _COMPANY, {"c": cid}).one().slug == "acme"
    finally:
        db.dispose()
