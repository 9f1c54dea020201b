"""Threading against a concurrent merge (several instances on PostgreSQL, READ COMMITTED):
the threads a copy read a moment ago may have been merged away before it joins them. The
copy must join the survivor — never fail, never leave a conversation split."""

from __future__ import annotations

import threading as threading_

import pytest
from sqlalchemy import func, select

from bccd.linking import threading
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Thread, ThreadRef
from tests.unit.builders import company_and_user

pytestmark = [pytest.mark.spec("5.4"), pytest.mark.spec("11")]


def _user(db: Database) -> tuple[int, int]:
    with db.transaction() as s:
        c, u = company_and_user(s)
        return c.id, u.id


def _thread(db: Database, company: int, user: int, *refs: str) -> int:
    with db.transaction() as s:
        t = Thread(company_id=company, owner_id=user, subject=refs[0])
        s.add(t)
        s.flush()
        s.add_all(ThreadRef(user_id=user, ref=r, thread_id=t.id) for r in refs)
        return t.id


def _merge(db: Database, keep: int, *others: int) -> None:
    """Another instance's merge, committed."""
    with db.transaction() as s:
        target = s.get(Thread, keep)
        assert target is not None
        assert threading.merge(s, target, others)


def _owners(db: Database, user: int, refs: list[str]) -> dict[str, int]:
    with db.read() as s:
        return threading._owners(s, user, refs)


def _resolve(db: Database, company: int, user: int, owners: dict[str, int],
             refs: list[str]) -> int:
    with db.transaction() as s:
        thread, created = threading.resolve(
            s, user_id=user, company_id=company, message_id="new@acme.test", refs=refs,
            gm_thrid=None, subject="Re: hello", visibility="shared", owners=owners)
        assert not created
        return thread.id


def _layout(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {ref: tid for ref, tid in s.execute(select(ThreadRef.ref, ThreadRef.thread_id))}


def _threads(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Thread)) or 0)


def test_a_reply_whose_thread_was_merged_away_joins_the_survivor(function_db: Database) -> None:
    db = function_db
    company, user = _user(db)
    first = _thread(db, company, user, "a@acme.test")
    second = _thread(db, company, user, "b@acme.test")
    stale = _owners(db, user, ["new@acme.test", "b@acme.test"])
    assert stale == {"b@acme.test": second}
    _merge(db, first, second)  # after the copy read its owners

    assert _resolve(db, company, user, stale, ["b@acme.test"]) == first
    assert _layout(db) == {"a@acme.test": first, "b@acme.test": first, "new@acme.test": first}
    assert _threads(db) == 1


def test_a_merge_that_finds_a_thread_gone_still_ends_in_one_thread(function_db: Database) -> None:
    db = function_db
    company, user = _user(db)
    one = _thread(db, company, user, "a@acme.test")
    two = _thread(db, company, user, "b@acme.test")
    three = _thread(db, company, user, "c@acme.test")
    stale = _owners(db, user, ["new@acme.test", "a@acme.test", "b@acme.test"])
    assert stale == {"a@acme.test": one, "b@acme.test": two}
    _merge(db, three, two)  # "b" now names the third thread, which the copy never read

    assert _resolve(db, company, user, stale, ["a@acme.test", "b@acme.test"]) == one
    assert set(_layout(db).values()) == {one}
    assert _threads(db) == 1


def test_a_merge_waits_for_a_copy_joining_the_thread_it_deletes(pg_url: str) -> None:
    """PostgreSQL: a copy is joining thread B (its insert holds B's key) while another
    instance merges B into A. The merge must wait and move that copy's row along —
    deleting B must not cascade it away."""
    upgrade(pg_url)
    db = Database(pg_url)
    try:
        company, user = _user(db)
        a = _thread(db, company, user, "a@acme.test")
        b = _thread(db, company, user, "b@acme.test")
        merged = threading_.Event()
        with db.transaction() as joining:
            joining.add(ThreadRef(user_id=user, ref="joining@acme.test", thread_id=b))
            joining.flush()  # uncommitted: holds a key-share lock on B
            other = threading_.Thread(target=lambda: (_merge(db, a, b), merged.set()))
            other.start()
            assert not merged.wait(1.0)  # the merge waits for this copy
        other.join(30)
        assert merged.is_set()
        assert _layout(db) == {"a@acme.test": a, "b@acme.test": a, "joining@acme.test": a}
    finally:
        db.dispose()
