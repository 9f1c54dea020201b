"""SPEC §5 "shared by SMTP and IMAP": the IMAP path goes through the same linking layer
— it matches persons but never creates them, honours the blocklist — and a message that
arrives by both paths is one message with both sources, linked as a Smart Bcc copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from bccd.config import Settings
from bccd.ingest.outcome import Disposition
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope, ImapOrigin, Target
from bccd.linking import blocklist
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.models import (
    Link,
    Message,
    MessageSource,
    Person,
    PersonEmail,
    User,
)
from tests.support.mail import make_message
from tests.unit.builders import bob_and_imap_account, company_and_user


@pytest.fixture
def db(migrated_db: Database) -> Database:
    """The tests build their own company (``tests.unit.builders``): an empty database."""
    return migrated_db


@pytest.fixture
def world(db: Database, tmp_path: Path) -> tuple[Pipeline, int, int, int]:
    settings = Settings.model_validate({"storage": {"data_dir": str(tmp_path)},
                                        "auth": {"mode": "off"}})
    with db.transaction() as s:
        c, u = company_and_user(s, bcc_token="abcdefghijklmnop")
        _, acct = bob_and_imap_account(s, c, u)
        ids = (c.id, u.id, acct.id)
    return Pipeline(settings, db, BlobStore(tmp_path / "blobs")), *ids


def _origin(account: int, uid: int) -> ImapOrigin:
    return ImapOrigin(account_id=account, folder="INBOX", uidvalidity=1, uid=uid)


def _count(db: Database, model: type, *where: object) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.mark.spec("5.5")
async def test_imap_matches_known_persons_but_never_creates_any(
        db: Database, world: tuple[Pipeline, int, int, int]) -> None:
    pipe, _company, user, account = world
    raw = make_message(frm="Bob <bob@client.test>", to="Alice <alice@acme.test>",
                       cc="New Person <new@client.test>", message_id="<in-1@client.test>")
    out = await pipe.ingest_imap(raw, user_id=user, origin=_origin(account, 1))
    assert out.disposition is Disposition.STORED
    assert _count(db, Person) == 1
    with db.read() as s:
        msg = s.scalars(select(Message)).one()
        assert (msg.direction, msg.from_addr) == ("incoming", "bob@client.test")
        assert [(lk.kind, lk.how) for lk in s.scalars(select(Link))] == [("person", "auto")]


@pytest.mark.spec("5.2")
async def test_imap_copy_from_a_blocked_sender_is_dropped_and_counted(
        db: Database, world: tuple[Pipeline, int, int, int]) -> None:
    pipe, _company, user, account = world
    with db.transaction() as s:
        u = s.get(User, user)
        assert u is not None
        blocklist.add(s, u, "@client.test")
    raw = make_message(frm="Bob <bob@client.test>", to="alice@acme.test")
    out = await pipe.ingest_imap(raw, user_id=user, origin=_origin(account, 2))
    assert out.disposition is Disposition.DROPPED
    assert _count(db, Message) == 0


@pytest.mark.spec("5.3")
async def test_a_message_by_imap_then_by_bcc_is_one_message_linked_as_a_bcc_copy(
        db: Database, world: tuple[Pipeline, int, int, int]) -> None:
    pipe, company, user, account = world
    raw = make_message(to="Bob <bob@client.test>, Carol <carol@newco.test>",
                       message_id="<both@acme.test>")
    first = await pipe.ingest_imap(raw, user_id=user, origin=_origin(account, 3))
    assert first.disposition is Disposition.STORED
    assert _count(db, Person) == 1  # IMAP did not create Carol
    target = Target(rcpt="acme+abcdefghijklmnop@bcc.localhost", user_id=user,
                    company_id=company)
    [second] = await pipe.ingest(raw, targets=[target], envelope=Envelope())
    assert second.disposition is Disposition.DUPLICATE
    assert _count(db, Message) == 1
    with db.read() as s:
        assert sorted(s.scalars(select(MessageSource.source))) == ["bcc", "imap"]
        carol = s.scalar(select(PersonEmail.person_id).where(
            PersonEmail.email == "carol@newco.test"))
        assert carol is not None  # the Smart Bcc copy may create persons
        linked = set(s.scalars(select(Link.entity_id).where(Link.kind == "person")))
        assert carol in linked and len(linked) == 2
