"""Tenancy of content-addressed blobs: the same file received by two companies is one
blob, yet neither can fetch the other's attachment — access goes through the message
and its thread's visibility (``bccd.mailstore.attachments.attachment_for_user``) — with the
blobs in files or in the database."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bccd import accounts
from bccd.errors import NotFound
from bccd.lifecycle import offboard
from bccd.mailstore.attachments import attachment_for_user, read_attachment
from bccd.store import dbblobs
from bccd.store.blobs import Blobs, BlobStore
from bccd.store.db import Database
from bccd.store.models import Attachment, Link, Message, Person, Thread, User

pytestmark = [pytest.mark.spec("5.8"), pytest.mark.spec("5.9")]


def _attachment(db: Database, blobs: Blobs, owner_email: str, data: bytes, *,
                visibility: str = "private", person: bool = False) -> int:
    with db.transaction() as s:
        user = accounts.get_user(s, owner_email)
        thread = Thread(company_id=user.company_id, owner_id=user.id, subject="s",
                        visibility=visibility)
        s.add(thread)
        s.flush()
        if person:
            p = Person(company_id=user.company_id, name="Carol")
            s.add(p)
            s.flush()
            s.add(Link(thread_id=thread.id, kind="person", entity_id=p.id, how="auto"))
        msg = Message(company_id=user.company_id, user_id=user.id, thread_id=thread.id,
                      dedup_key=uuid.uuid4().hex, direction="outgoing", raw_sha256="0" * 64)
        s.add(msg)
        s.flush()
        [digest] = blobs.prepare([data]).digests
        if blobs.in_database:
            dbblobs.store(s, [(digest, data)])
        att = Attachment(message_id=msg.id, filename="f.pdf", size=len(data), sha256=digest)
        s.add(att)
        s.flush()
        return att.id


@pytest.mark.parametrize("kind", ["fs", "database"])
def test_a_company_cannot_fetch_another_companys_attachment_by_id_or_by_shared_content(
        function_db: Database, tmp_path: Path, kind: str) -> None:
    db, blobs = function_db, Blobs(kind, BlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]
    with db.transaction() as s:
        acme, globex = accounts.create_company(s, "Acme"), accounts.create_company(s, "Globex")
        for email, company in (("alice@acme.test", acme), ("bob@acme.test", acme),
                               ("gina@globex.test", globex)):
            accounts.create_user(s, email, company)
    same = b"the same contract, sent to both companies"
    private = _attachment(db, blobs, "alice@acme.test", same)
    shared = _attachment(db, blobs, "alice@acme.test", b"shared", visibility="shared", person=True)
    theirs = _attachment(db, blobs, "gina@globex.test", same)

    def user(s, email: str) -> User:
        return accounts.get_user(s, email)

    with db.read() as s:
        assert s.get(Attachment, private).sha256 == s.get(Attachment, theirs).sha256
        assert read_attachment(s, blobs, user(s, "alice@acme.test"), private)[1] == same
        assert read_attachment(s, blobs, user(s, "gina@globex.test"), theirs)[1] == same
        assert attachment_for_user(s, user(s, "bob@acme.test"), shared).id == shared
        refusals = [("gina@globex.test", private), ("gina@globex.test", shared),
                    ("alice@acme.test", theirs), ("bob@acme.test", private),
                    ("bob@acme.test", 10_000_000)]
        for email, att in refusals:
            with pytest.raises(NotFound, match=f"^no attachment {att}$"):
                attachment_for_user(s, user(s, email), att)
    with db.transaction() as s:
        offboard.disable_user(s, user(s, "alice@acme.test"))
    with db.read() as s, pytest.raises(NotFound):
        attachment_for_user(s, user(s, "alice@acme.test"), private)
