"""SPEC §5.5/§5.7 under concurrency on PostgreSQL (READ COMMITTED, several instances): a
person given an address while a copy naming that address is being filed — by a copy that
does not create the person itself (the company does not create unknown contacts, or the
copy was synced over IMAP, which never creates persons).

Each interleaving is forced (``tests.support.pglocks``). Whichever commits first, the
copy's thread ends linked to the person:

- the copy first: the person's transaction waits for the filing to commit, so the
  relinking pass that follows it finds the copy (without the address lock the pass could
  run before the copy commits and the thread would stay without the person);
- the person first: the filing waits for the person to commit, then finds and links them
  itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bccd import crm
from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest import filing
from bccd.ingest.parse import parse
from bccd.ingest.types import ImapOrigin, Source
from bccd.linking import retro
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Company, ImapAccount, Link, Participant, Person
from tests.support.mail import make_message
from tests.support.pglocks import in_thread, wait_for_a_lock_wait
from tests.unit.builders import company_and_user

pytestmark = [pytest.mark.spec("5.5"), pytest.mark.spec("5.7")]

CAROL = "carol@client.test"


@dataclasses.dataclass
class World:
    db: Database
    url: str
    company: int
    user: int
    account: int

    def request(self, source: Source) -> filing.FileRequest:
        raw = make_message(frm="Alice <alice@acme.test>", to=f"Carol <{CAROL}>",
                           message_id="<carol-race@acme.test>")
        origin = None if source is Source.BCC else ImapOrigin(
            account_id=self.account, folder="Sent", uidvalidity=1, uid=1, sent=True)
        return filing.FileRequest(
            user_id=self.user, raw=raw, parsed=parse(raw, max_header_size=512 * 1024),
            source=source, direction="outgoing", sender=Addr("alice@acme.test", "Alice"),
            auth=SKIPPED, bcc_domain="bcc.localhost", origin=origin,
            raw_sha256=hashlib.sha256(raw).hexdigest())

    def create_carol(self) -> int:
        """``bccd person create``: the person in one transaction, then the relinking."""
        with self.db.transaction() as s:
            company = s.get(Company, self.company)
            assert company is not None
            pid = crm.create_person(s, company, name="Carol", emails=[CAROL]).id
        retro.relink_for_addresses(self.db, company_id=self.company, emails=[CAROL])
        return pid

    def carol_on(self, thread_id: int) -> tuple[bool, list[int | None]]:
        """Whether the thread links Carol, and the person of her participant rows."""
        with self.db.read() as s:
            carol = s.scalar(select(Person.id).where(Person.name == "Carol"))
            linked = s.scalar(select(Link.id).where(
                Link.thread_id == thread_id, Link.kind == "person", Link.entity_id == carol))
            people = list(s.scalars(select(Participant.person_id).where(
                Participant.email == CAROL)))
            return linked is not None, [p == carol for p in people]


@pytest.fixture(params=[Source.BCC, Source.IMAP], ids=["bcc-creation-off", "imap"])
def world(request: pytest.FixtureRequest, pg_url: str) -> Iterator[tuple[World, Source]]:
    upgrade(pg_url)
    db = Database(pg_url)
    with db.transaction() as s:
        c, u = company_and_user(s)
        c.create_unknown_contacts = False if request.param is Source.BCC else True
        acct = ImapAccount(user_id=u.id, host="imap.test", port=993, username="alice",
                           secret_enc="x")
        s.add(acct)
        s.flush()
        ids = c.id, u.id, acct.id
    yield World(db, pg_url, *ids), request.param
    db.dispose()


def test_a_person_created_while_a_copy_names_their_address_waits_and_is_then_linked(
        world: tuple[World, Source]) -> None:
    w, source = world
    with w.db.transaction() as s:  # the copy is filed, not yet committed
        out = filing.file_in(s, w.request(source), [])
        assert out.thread_id is not None
        th, created = in_thread(w.create_carol)
        wait_for_a_lock_wait(w.url)  # the person waits for the filing
        assert not created
    th.join(30)
    assert [type(c) for c in created] == [int], created
    assert w.carol_on(out.thread_id) == (True, [True])


def test_a_copy_filed_while_its_address_is_given_to_a_person_waits_and_links_them(
        world: tuple[World, Source]) -> None:
    w, source = world
    with w.db.transaction() as s:  # the person is created, not yet committed
        company = s.get(Company, w.company)
        assert company is not None
        crm.create_person(s, company, name="Carol", emails=[CAROL])
        req = w.request(source)
        th, filed = in_thread(lambda: w.db.write_sync(filing.file_in, req, []))
        wait_for_a_lock_wait(w.url)  # the filing waits for the person
        assert not filed
    th.join(30)
    [out] = filed
    assert not isinstance(out, BaseException), out
    # linked by the copy itself: no relinking pass has run
    assert w.carol_on(out.thread_id) == (True, [True])
