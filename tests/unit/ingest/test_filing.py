"""Filing a copy reads once (``ingest.filing``'s one query per copy) and the linking layer
decides as it would with its own reads: own addresses and blocked counterparts are left
out, a person with an open deal links a new thread to it, a reply joins its thread (also
one already loaded in the session), a Smart Bcc copy of a message synced over IMAP links
as a Bcc copy — on SQLite and PostgreSQL. ``FixedIn`` answers like ``IN``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest import filing
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.parse import parse
from bccd.ingest.types import ImapOrigin, Source
from bccd.linking import blocklist
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import (
    Alternate,
    Item,
    Link,
    Message,
    MessageSource,
    Organization,
    Participant,
    Person,
    PersonEmail,
    Suggestion,
    Thread,
    User,
)
from bccd.store.queries import FixedIn
from tests.support.mail import make_message
from tests.unit.builders import bob_and_imap_account, company_and_user

BCC = "bcc.localhost"


class World:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db, self.blobs = db, blobs
        with db.transaction() as s:
            c, u = company_and_user(s, bcc_token="abcdefghijklmnop", sharing_default="shared")
            bob, acct = bob_and_imap_account(s, c, u)
            self.company, self.user, self.bob, self.account = c.id, u.id, bob.id, acct.id

    def file(self, raw: bytes, *, source: Source = Source.BCC, direction: str = "outgoing",
             sender: Addr | None = None, uid: int = 1) -> Outcome:
        req = filing.FileRequest(
            user_id=self.user, raw=raw, parsed=parse(raw, max_header_size=512 * 1024),
            source=source, direction=direction,
            sender=sender or Addr("alice@acme.test", "Alice"), auth=SKIPPED, bcc_domain=BCC,
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            origin=ImapOrigin(self.account, "INBOX", 1, uid) if source is Source.IMAP else None)
        return filing.file_copy(self.db, self.blobs, req)

    def scalars(self, stmt: Any) -> list[Any]:
        with self.db.read() as s:
            return list(s.scalars(stmt))

    def rows(self, stmt: Any) -> list[Any]:
        with self.db.read() as s:
            return list(s.execute(stmt).all())


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    upgrade(db_url)
    db = Database(db_url)
    yield World(db, BlobStore(tmp_path / "blobs"))
    db.dispose()


def _statements(db: Database) -> list[str]:
    seen: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def record(_conn: Any, _cur: Any, stmt: str, *_a: Any) -> None:
        seen.append(stmt.split()[0].upper())

    return seen


def test_a_copy_that_starts_a_thread_with_a_known_person_reads_once(world: World) -> None:
    seen = _statements(world.db)
    out = world.file(make_message(frm="Alice <alice@acme.test>", to="Bob <bob@client.test>"))
    assert out.disposition is Disposition.STORED
    # PostgreSQL: the read also share-locks Bob, and his items are read again under the
    # lock, so a deal created meanwhile by another instance is never missed
    # (``linking.deals``, tests/unit/linking/test_link_state_race.py); SQLite's one
    # writer needs neither
    assert seen.count("SELECT") == (1 if world.db.is_sqlite else 2)
    assert world.scalars(select(Link.entity_id).where(Link.kind == "person")) == [world.bob]
    assert world.scalars(select(Participant.person_id).where(
        Participant.email == "bob@client.test")) == [world.bob]


@pytest.mark.spec("5.11")
def test_the_persons_organization_comes_with_the_one_read(world: World) -> None:
    """SPEC §5.11: the organization the owner may see is read with the person; one the
    owner may not see is not linked."""
    with world.db.transaction() as s:
        client = Organization(company_id=world.company, name="Client Co")
        hidden = Organization(company_id=world.company, name="Hidden Co", visible_to="owner")
        s.add_all([client, hidden])
        s.flush()
        bob = s.get(Person, world.bob)
        assert bob is not None
        bob.organization_id = client.id
        carol = Person(company_id=world.company, name="Carol", organization_id=hidden.id)
        s.add(carol)
        s.flush()
        s.add(PersonEmail(company_id=world.company, person_id=carol.id,
                          email="carol@client.test"))
        ids = client.id, carol.id
    seen = _statements(world.db)
    out = world.file(make_message(frm="Alice <alice@acme.test>",
                                  to="Bob <bob@client.test>, Carol <carol@client.test>"))
    assert seen.count("SELECT") == (1 if world.db.is_sqlite else 2)
    links = {(k, e, h) for k, e, h in world.rows(
        select(Link.kind, Link.entity_id, Link.how).where(Link.thread_id == out.thread_id))}
    assert links == {("person", world.bob, "auto"), ("person", ids[1], "auto"),
                     ("organization", ids[0], "auto")}


@pytest.mark.spec("5.2")
def test_own_alternates_and_blocked_counterparts_are_not_linked(world: World) -> None:
    with world.db.transaction() as s:
        s.add(Alternate(user_id=world.user, email="alice@home.test", status="confirmed"))
        s.add(Alternate(user_id=world.user, email="alice@pending.test", status="pending"))
        u = s.get(User, world.user)
        assert u is not None
        blocklist.add(s, u, "@spam.test")
    raw = make_message(frm="Alice <alice@acme.test>",
                       to="Me <alice@home.test>, Bob <bob@client.test>, X <x@spam.test>",
                       cc="P <alice@pending.test>")
    assert world.file(raw).disposition is Disposition.STORED
    emails = world.scalars(select(PersonEmail.email).order_by(PersonEmail.email))
    # the pending alternate is not the user's yet: a counterpart like any other
    assert emails == ["alice@pending.test", "bob@client.test"]
    assert len(world.scalars(select(Link.id).where(Link.kind == "person"))) == 2
    # every counterpart blocked: an outgoing copy is dropped
    out = world.file(make_message(frm="Alice <alice@acme.test>", to="X <x@spam.test>"))
    assert out.disposition is Disposition.DROPPED


@pytest.mark.spec("5.6")
def test_a_new_thread_links_the_one_open_deal_and_suggests_several(world: World) -> None:
    with world.db.transaction() as s:
        deal = Item(company_id=world.company, kind="deal", title="D", person_id=world.bob)
        s.add(deal)
        s.flush()
        deal_id = deal.id
    out = world.file(make_message(frm="Alice <alice@acme.test>", to="Bob <bob@client.test>"))
    assert world.scalars(select(Link.entity_id).where(
        Link.thread_id == out.thread_id, Link.kind == "deal")) == [deal_id]
    with world.db.transaction() as s:
        s.add(Item(company_id=world.company, kind="lead", title="L", person_id=world.bob))
    out = world.file(make_message(frm="Alice <alice@acme.test>", to="Bob <bob@client.test>"))
    assert world.scalars(select(Link.id).where(
        Link.thread_id == out.thread_id, Link.kind.in_(("deal", "lead")))) == []
    assert len(world.scalars(select(Suggestion.id).where(
        Suggestion.thread_id == out.thread_id))) == 2


@pytest.mark.spec("5.4")
def test_replies_join_the_thread_and_a_late_root_takes_its_subject(world: World) -> None:
    first = world.file(make_message(to="Bob <bob@client.test>", subject="Re: Offer",
                                    message_id="<r1@acme.test>", in_reply_to="<root@acme.test>",
                                    references="<root@acme.test>"))
    second = world.file(make_message(to="Bob <bob@client.test>", subject="Re: Offer",
                                     message_id="<r2@acme.test>", in_reply_to="<r1@acme.test>",
                                     references="<root@acme.test> <r1@acme.test>"))
    root = world.file(make_message(to="Bob <bob@client.test>", subject="Offer",
                                   message_id="<root@acme.test>"))
    assert first.thread_id == second.thread_id == root.thread_id
    assert root.extra == {"thread_created": False}
    assert world.scalars(select(Thread.subject)) == ["Offer"]
    assert world.scalars(select(func.count()).select_from(Message)) == [3]


@pytest.mark.parametrize("chain", [3, 16, 40])
@pytest.mark.spec("5.4")
def test_a_reply_with_a_long_references_chain_joins_its_thread(world: World, chain: int) -> None:
    # up to 16 ids are looked up in the one read per copy, more by the threading layer
    root = world.file(make_message(to="Bob <bob@client.test>", message_id="<c0@acme.test>"))
    refs = " ".join(f"<c{i}@acme.test>" for i in range(chain - 1))
    reply = world.file(make_message(to="Bob <bob@client.test>",
                                    message_id=f"<c{chain - 1}@acme.test>",
                                    in_reply_to=f"<c{chain - 2}@acme.test>", references=refs))
    assert reply.thread_id == root.thread_id
    assert reply.extra == {"thread_created": False}
    late = world.file(make_message(to="Bob <bob@client.test>", message_id="<c1@acme.test>"))
    assert late.thread_id == root.thread_id


@pytest.mark.spec("5.4")
def test_a_reply_joins_a_thread_the_session_already_holds(world: World) -> None:
    first = world.file(make_message(to="Bob <bob@client.test>", message_id="<a1@acme.test>"))
    raw = make_message(to="Bob <bob@client.test>", message_id="<a2@acme.test>",
                       in_reply_to="<a1@acme.test>")
    req = filing.FileRequest(
        user_id=world.user, raw=raw, parsed=parse(raw, max_header_size=512 * 1024),
        source=Source.BCC, direction="outgoing", sender=Addr("alice@acme.test", "Alice"),
        auth=SKIPPED, bcc_domain=BCC, raw_sha256=hashlib.sha256(raw).hexdigest())
    with world.db.transaction() as s:
        held = s.get(Thread, first.thread_id)
        assert held is not None
        before = held.last_message_at
        out = filing.file_in(s, req, [])
        assert out.thread_id == first.thread_id
        assert held.last_message_at > before  # the ORM object saw the update


@pytest.mark.spec("5.3")
def test_imap_then_bcc_links_as_a_bcc_copy_once(world: World) -> None:
    raw = make_message(frm="Alice <alice@acme.test>",
                       to="Bob <bob@client.test>, Carol <carol@newco.test>",
                       message_id="<both@acme.test>")
    first = world.file(raw, source=Source.IMAP)
    assert first.disposition is Disposition.STORED
    assert world.scalars(select(func.count()).select_from(Person)) == [1]
    second = world.file(raw)
    assert second.disposition is Disposition.DUPLICATE
    assert (second.message_id, second.thread_id) == (first.message_id, first.thread_id)
    carol = world.scalars(select(PersonEmail.person_id).where(
        PersonEmail.email == "carol@newco.test"))
    assert len(carol) == 1
    assert world.scalars(select(Participant.person_id).where(
        Participant.email == "carol@newco.test")) == carol
    third = world.file(raw, source=Source.IMAP, uid=2)
    assert third.disposition is Disposition.DUPLICATE
    assert sorted(world.scalars(select(MessageSource.source))) == ["bcc", "imap"]
    assert world.scalars(select(func.count()).select_from(Person)) == [2]


def test_fixed_in_answers_like_in(world: World) -> None:
    with world.db.transaction() as s:
        for i in range(5):
            p = Person(company_id=world.company, name=f"P{i}")
            s.add(p)
            s.flush()
            s.add(PersonEmail(company_id=world.company, person_id=p.id, email=f"p{i}@x.test"))
    pe = PersonEmail.__table__
    fixed = FixedIn(pe.c.email, "e", lambda in_: select(pe.c.email).where(in_))
    with world.db.read() as s:
        for n in range(1, 7):
            wanted = [f"p{i}@x.test" for i in range(n)]
            stmt, params = fixed(wanted)
            assert len(params) == 1 << (n - 1).bit_length()
            got = sorted(s.connection().execute(stmt, params).scalars())
            assert got == sorted(w for w in wanted if w != "p5@x.test")
    with pytest.raises(ValueError):
        fixed([])

