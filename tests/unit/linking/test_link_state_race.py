"""SPEC §5.6/§5.7/§5.12 under concurrency on PostgreSQL (READ COMMITTED, several
instances): a deal created — or closed — while a copy of its person's mail is being filed.

Each interleaving is forced, not hoped for: one transaction is held open at the point
that matters while the other runs in a thread, and the test waits until PostgreSQL
reports that one waiting on the other's lock. Whichever commits first, the thread ends
linked as the rule says and its ``link_state`` is what its links make of it:

- the copy first: the deal's transaction waits for the filing to commit, then its
  retroactive pass finds the new thread (without the person lock it would find nothing
  and the thread would stay ``no_open_item`` beside the person's one open deal);
- the deal first: the filing waits for the deal to commit, then reads it;
- a second item closed while the copy is filed: the remaining one is linked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bccd import crm
from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest import filing
from bccd.ingest.parse import parse
from bccd.ingest.types import Source
from bccd.linking import linkstate, retro
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Company, Item, Link, Person, PersonEmail, Thread
from tests.support.mail import make_message
from tests.support.pglocks import in_thread, wait_for_a_lock_wait
from tests.unit.builders import company_and_user

pytestmark = pytest.mark.spec("5.12")


class World:
    def __init__(self, db: Database, url: str) -> None:
        self.db, self.url = db, url
        with db.transaction() as s:
            c, u = company_and_user(s, bcc_token="abcdefghijklmnop")
            bob = Person(company_id=c.id, name="Bob")
            s.add(bob)
            s.flush()
            s.add(PersonEmail(company_id=c.id, person_id=bob.id, email="bob@client.test"))
            self.company, self.user, self.bob = c.id, u.id, bob.id
        self.n = 0

    def request(self) -> filing.FileRequest:
        self.n += 1
        raw = make_message(frm="Alice <alice@acme.test>", to="Bob <bob@client.test>",
                           message_id=f"<race{self.n}@acme.test>")
        return filing.FileRequest(
            user_id=self.user, raw=raw, parsed=parse(raw, max_header_size=512 * 1024),
            source=Source.BCC, direction="outgoing", sender=Addr("alice@acme.test", "Alice"),
            auth=SKIPPED, bcc_domain="bcc.localhost", raw_sha256=hashlib.sha256(raw).hexdigest())

    def create_deal(self, title: str) -> int:
        """``bccd deal create``: the item in one transaction, then the retroactive pass."""
        with self.db.transaction() as s:
            company = s.get(Company, self.company)
            assert company is not None
            item = crm.create_item(s, company, "deal", title=title, person_id=self.bob)
            item_id = item.id
        retro.relink_for_item(self.db, item_id)
        return item_id

    def set_status(self, item_id: int, status: str) -> None:
        with self.db.transaction() as s:
            item = s.get(Item, item_id)
            assert item is not None
            crm.set_item_status(item, status)
        retro.relink_for_item(self.db, item_id)

    def outcome(self, thread_id: int) -> tuple[list[tuple[str, int, str]], str]:
        with self.db.read() as s:
            links = [(k, e, h) for k, e, h in s.execute(
                select(Link.kind, Link.entity_id, Link.how).where(
                    Link.thread_id == thread_id, Link.kind != "person"))]
            thread = s.get(Thread, thread_id)
            assert thread is not None
            assert linkstate.stale(s) == []
            return links, thread.link_state

    def wait_for_a_lock_wait(self) -> None:
        wait_for_a_lock_wait(self.url)


@pytest.fixture
def world(pg_url: str, tmp_path: Path) -> Iterator[World]:
    upgrade(pg_url)
    db = Database(pg_url)
    yield World(db, pg_url)
    db.dispose()


def test_a_deal_created_while_a_copy_is_being_filed_waits_and_then_links_it(world: World) -> None:
    with world.db.transaction() as s:  # the copy is filed, not yet committed
        out = filing.file_in(s, world.request(), [])
        assert out.thread_id is not None
        th, created = in_thread(lambda: world.create_deal("Renewal"))
        world.wait_for_a_lock_wait()  # the deal waits for the filing
        assert not created
    th.join(30)
    [deal] = created
    assert isinstance(deal, int), deal
    assert world.outcome(out.thread_id) == ([("deal", deal, "auto")], "linked")


def test_a_copy_filed_while_a_deal_is_created_waits_and_then_reads_it(world: World) -> None:
    with world.db.transaction() as s:  # the deal is created, not yet committed
        company = s.get(Company, world.company)
        assert company is not None
        deal = crm.create_item(s, company, "deal", title="Renewal", person_id=world.bob).id
        req = world.request()
        th, filed = in_thread(lambda: world.db.write_sync(filing.file_in, req, []))
        world.wait_for_a_lock_wait()  # the filing waits for the deal
        assert not filed
    th.join(30)
    [out] = filed
    assert not isinstance(out, BaseException), out
    retro.relink_for_item(world.db, deal)
    assert world.outcome(out.thread_id) == ([("deal", deal, "auto")], "linked")


def test_an_item_closed_while_a_copy_is_being_filed_leaves_the_other_one_linked(
        world: World) -> None:
    keep, close = world.create_deal("Keep"), world.create_deal("Close")
    with world.db.transaction() as s:
        out = filing.file_in(s, world.request(), [])  # two candidates: suggestions
        th, done = in_thread(lambda: world.set_status(close, "lost"))
        world.wait_for_a_lock_wait()
        assert not done
    th.join(30)
    assert done == [None]
    assert world.outcome(out.thread_id) == ([("deal", keep, "auto")], "linked")
