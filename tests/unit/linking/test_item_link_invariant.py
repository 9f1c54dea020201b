"""SPEC §5.6 "a thread has at most one deal/lead/project link": a database constraint,
and the merge of two threads keeps the strongest of their item links (manual, then a
pinned address, then automatic)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bccd.linking import deals, threading
from bccd.store.db import Database
from bccd.store.models import Item, Link, Thread, User
from tests.unit.builders import company_and_user

pytestmark = pytest.mark.spec("5.6")


def _setup(s) -> tuple[User, list[Item]]:
    c, u = company_and_user(s)
    items = [Item(company_id=c.id, kind=k, title=k) for k in ("deal", "lead", "project")]
    s.add_all(items)
    s.flush()
    return u, items


def _thread(s, u: User, *links: tuple[Item, str, int]) -> Thread:
    t = Thread(company_id=u.company_id, owner_id=u.id)
    s.add(t)
    s.flush()
    for item, how, age in links:
        s.add(Link(thread_id=t.id, kind=item.kind, entity_id=item.id, how=how,
                   created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=age)))
    s.flush()
    return t


def test_a_second_item_link_on_one_thread_is_refused_by_the_database(db: Database) -> None:
    with pytest.raises(IntegrityError), db.transaction() as s:
        u, (deal, lead, _) = _setup(s)
        _thread(s, u, (deal, "auto", 0), (lead, "auto", 0))


@pytest.mark.parametrize(("keep", "other", "winner"), [
    (("deal", "auto", 0), ("lead", "manual", 5), ("lead", "manual")),
    (("deal", "manual", 5), ("lead", "address", 0), ("deal", "manual")),
    (("deal", "auto", 0), ("project", "address", 9), ("project", "address")),
    (("deal", "address", 9), ("lead", "address", 1), ("lead", "address")),
    (("deal", "auto", 0), ("lead", "auto", 0), ("deal", "auto")),
])
def test_merging_two_threads_keeps_the_strongest_item_link(
        db: Database, keep: tuple[str, str, int], other: tuple[str, str, int],
        winner: tuple[str, str]) -> None:
    with db.transaction() as s:
        u, items = _setup(s)
        by_kind = {i.kind: i for i in items}
        a = _thread(s, u, (by_kind[keep[0]], keep[1], keep[2]))
        b = _thread(s, u, (by_kind[other[0]], other[1], other[2]))
        threading.merge(s, a, [b.id])
        s.flush()
        rows = s.execute(select(Link.thread_id, Link.kind, Link.how)).all()
        assert [tuple(r) for r in rows] == [(a.id, *winner)]
        assert s.get(Thread, b.id) is None


@pytest.mark.parametrize("loaded", [False, True], ids=["links-not-loaded", "links-loaded"])
def test_setting_the_item_link_replaces_the_other_and_records_how_whether_or_not_loaded(
        db: Database, loaded: bool) -> None:
    with db.transaction() as s:
        u, (deal, lead, _) = _setup(s)
        t = _thread(s, u, (deal, "auto", 30))
        tid, deal_id, lead_id = t.id, deal.id, lead.id
    with db.transaction() as s:
        held = list(s.scalars(select(Link).where(Link.thread_id == tid))) if loaded else []
        deals.set_item_link(s, tid, "lead", lead_id, "manual")
        deals.set_item_link(s, tid, "lead", lead_id, "address")  # the same item, a new how
        rows = s.execute(select(Link.kind, Link.entity_id, Link.how)
                         .where(Link.thread_id == tid)).all()
        assert [tuple(r) for r in rows] == [("lead", lead_id, "address")]
        # a Link the session held is not left behind as if it were still linked
        assert all(lk not in s or lk.entity_id != deal_id for lk in held)
        assert s.get(Thread, tid).link_state == "linked"
