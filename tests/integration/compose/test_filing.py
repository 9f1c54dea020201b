"""Filing a message written in bccd through the one ingest path (``Pipeline.
file_composed``), in the orders the real world cannot be made to produce on demand: its
Smart Bcc copy or its synced copy filed *before* the composed one (the relay was faster
than the commit). Either way it is one message with both sources, linked to the entity
it was written from ``how = manual``, in the replied-to thread — on both databases."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from bccd import accounts, crm
from bccd.config import Settings
from bccd.crypto import SecretBox
from bccd.ingest.outcome import Disposition
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope, ImapOrigin, Source, Target
from bccd.mailboxes import accounts as mailboxes
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.models import Link, Message, MessageSource
from tests.support.mail import make_message

pytestmark = pytest.mark.xdist_group("compose_filing")


@pytest.fixture
def world(function_db: Database, tmp_path: Path) -> tuple[Pipeline, int, int, int]:
    settings = Settings.model_validate({"auth": {"mode": "off"},
                                        "storage": {"data_dir": str(tmp_path / "var")}})
    pipeline = Pipeline(settings, function_db, BlobStore(tmp_path / "blobs"))
    with function_db.transaction() as s:
        company = accounts.create_company(s, "Acme", "acme")
        user = accounts.create_user(s, "alice@acme.test", company, name="Alice").user
        person = crm.create_person(s, company, name="Dana", emails=["dana@client.test"])
        deal = crm.create_item(s, company, "deal", title="Big deal", person_id=person.id)
        other = crm.create_item(s, company, "deal", title="Other deal", person_id=person.id)
        mailbox = mailboxes.add_account(s, SecretBox(["k" * 32]), user_email=user.email,
                                        host="imap.acme.test", username=user.email,
                                        auth=mailboxes.PasswordAuth("pw"))
        assert mailbox.id == 1  # the ImapOrigin(1, …) below
        return pipeline, user.id, deal.id, other.id


def _raw(mid: str, **kw: str) -> bytes:
    return make_message(frm="Alice <alice@acme.test>", to="Dana <dana@client.test>",
                        subject="Filed once", message_id=mid, **kw)


def _state(db: Database, mid: str) -> tuple[list[int], list[str], set[tuple[str, int, str]]]:
    with db.read() as s:
        msgs = list(s.scalars(select(Message).where(Message.message_id == mid)))
        sources = sorted(s.scalars(select(MessageSource.source)
                                   .where(MessageSource.message_id.in_([m.id for m in msgs]))))
        links = {(lk.kind, lk.entity_id, lk.how) for lk in s.scalars(
            select(Link).where(Link.thread_id.in_([m.thread_id for m in msgs])))}
        return [m.id for m in msgs], sources, links


async def test_a_bcc_copy_filed_first_then_the_composed_one_is_one_message(world) -> None:
    pipeline, user_id, deal_id, other_id = world
    raw = _raw("<bcc-first@acme.test>")
    [first] = await pipeline.ingest(raw, source=Source.BCC, targets=[
        Target("acme+x@bcc.test", user_id, 1)], envelope=Envelope(mail_from="alice@acme.test"))
    assert first.disposition is Disposition.STORED
    out = await pipeline.file_composed(raw, user_id=user_id, chosen=("deal", other_id))
    assert out.disposition is Disposition.DUPLICATE and out.message_id == first.message_id
    ids, sources, links = _state(pipeline.db, "bcc-first@acme.test")
    assert ids == [first.message_id] and sources == ["bcc", "compose"]
    # the entity it was written from wins over the automatic choice (two open deals: none)
    assert ("deal", other_id, "manual") in links and ("deal", deal_id, "auto") not in links


async def test_a_synced_copy_filed_first_then_the_composed_one_is_one_message(world) -> None:
    pipeline, user_id, deal_id, _ = world
    raw = _raw("<sync-first@acme.test>")
    first = await pipeline.ingest_imap(raw, user_id=user_id,
                                       origin=ImapOrigin(1, "Sent", 7, 1))
    assert first.disposition is Disposition.STORED
    out = await pipeline.file_composed(raw, user_id=user_id, chosen=("deal", deal_id))
    assert out.disposition is Disposition.DUPLICATE
    ids, sources, links = _state(pipeline.db, "sync-first@acme.test")
    assert ids == [first.message_id] and sources == ["compose", "imap"]
    assert ("deal", deal_id, "manual") in links


async def test_compose_files_into_the_replied_thread_and_then_the_bcc_copy_is_the_same(world) -> None:
    pipeline, user_id, deal_id, _ = world
    parent = make_message(frm="Dana <dana@client.test>", to="alice@acme.test", subject="Question",
                          message_id="<parent@client.test>")
    p = await pipeline.ingest_imap(parent, user_id=user_id, origin=ImapOrigin(1, "INBOX", 7, 2))
    reply = _raw("<reply@acme.test>", in_reply_to="<parent@client.test>",
                 references="<parent@client.test>")
    seen: list[object] = []
    out = await pipeline.file_composed(reply, user_id=user_id, chosen=("deal", deal_id),
                                       then=lambda s, o: seen.append(o.disposition))
    assert out.disposition is Disposition.STORED and out.thread_id == p.thread_id
    assert seen == [Disposition.STORED]   # ``then`` ran in the filing's transaction
    [again] = await pipeline.ingest(reply, source=Source.BCC, targets=[
        Target("acme+x@bcc.test", user_id, 1)], envelope=Envelope(mail_from="alice@acme.test"))
    assert again.disposition is Disposition.DUPLICATE and again.message_id == out.message_id
    _, sources, links = _state(pipeline.db, "reply@acme.test")
    assert sources == ["bcc", "compose"] and ("deal", deal_id, "manual") in links
    with pipeline.db.read() as s:
        m = s.get(Message, out.message_id)
        assert m is not None and m.direction == "outgoing" and m.auth["verdict"] == "none"
        assert hashlib.sha256(reply).hexdigest() == m.raw_sha256
