"""SPEC §5.10, §5.13 and §7 "Scope" through mailbox sync against a real Dovecot, on SQLite
and PostgreSQL: the table of real-shaped messages (``tests.support.automated``) and
other MTAs' bounces synced from the INBOX, calendar invites becoming one meeting, and a
``known`` scope whose skipped mail appears once its counterpart becomes a person."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd import crm
from bccd.config import Settings
from bccd.imap.poller import sync_once
from bccd.imap.sync import IngestSink
from bccd.mailboxes import accounts
from bccd.mailstore import read
from bccd.store.db import Database
from bccd.store.models import Company, ImapScopeSkip, Meeting, Message, Thread, User
from tests.integration.imap.conftest import BOTH_ENGINES, USER_EMAIL, BccdUser
from tests.integration.imap.helpers import make_message
from tests.support.automated import SHAPES, flanker_bounce
from tests.support.dovecot import Dovecot
from tests.support.invites import ics, invite_mail

pytestmark = [pytest.mark.spec("5.10"), pytest.mark.spec("7")]

BOB = "bob@client.test"
PEOPLE = {USER_EMAIL: "NEEDS-ACTION", BOB: "ACCEPTED"}


def threads(db: Database, user_id: int, *categories: str) -> list[dict[str, Any]]:
    with db.read() as s:
        user = s.get(User, user_id)
        assert user is not None
        return read.list_threads(s, user, read.Filters(category=categories), limit=None)["threads"]


def detail(db: Database, user_id: int, thread_id: int) -> dict[str, Any]:
    with db.read() as s:
        user = s.get(User, user_id)
        assert user is not None
        return read.show_thread(s, read.get_visible_thread(s, user, thread_id), user)


def _acme(s: Session) -> Company:
    company = s.scalar(select(Company).where(Company.slug == "acme"))
    assert company is not None
    return company


def add_person(db: Database, name: str, *emails: str) -> int:
    with db.transaction() as s:
        return crm.create_person(s, _acme(s), name=name, emails=list(emails)).id


def add_deals(db: Database, person_id: int, *titles: str) -> None:
    """An open deal of the person for each title."""
    with db.transaction() as s:
        for title in titles:
            crm.create_item(s, _acme(s), kind="deal", title=title, person_id=person_id)


@BOTH_ENGINES
async def test_the_table_of_shapes_synced_from_the_inbox(
        dovecot: Dovecot, imap_user: str, add_account: Callable[..., int], settings: Settings,
        db: Database, sink: IngestSink, bccd_user: BccdUser) -> None:
    add_deals(db, add_person(db, "Bob", BOB), "Big deal")
    quote = "<q42@acme.test>"
    dovecot.append(imap_user, make_message(USER_EMAIL, BOB, subject="Quote #42",
                                           message_id=quote), "Sent")
    for name, shape in sorted(SHAPES.items()):
        sender = "carol@acme.test" if shape.colleague else BOB
        raw = shape.build(sender, USER_EMAIL, message_id=f"<{name}@shapes.test>",
                          **({"in_reply_to": quote} if shape.reply else {}))
        dovecot.append(imap_user, raw)
    account = add_account(dovecot, imap_user)
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is None and result.stored == len(SHAPES) + 1

    listed = threads(db, bccd_user.id)
    by_id = {}
    for th in listed:
        for m in detail(db, bccd_user.id, th["thread_id"])["messages"]:
            by_id[m["message_id"]] = (m, th)
    for name, shape in SHAPES.items():
        m, th = by_id[f"{name}@shapes.test"]
        assert m["category"] == shape.category, name
        assert shape.reason in m["category_reason"], name
        if shape.reply:       # joined Alice's linked conversation, which stays linked
            assert th["subject"] == "Quote #42" and th["link_state"] == "linked", name
        elif shape.category in ("auto_reply", "bulk", "bounce"):
            assert (th["links"], th["link_state"]) == ([], "automated"), name
        elif shape.category == "internal":
            assert th["link_state"] == "no_person", name
        else:   # Bob's own mail: linked to him and his only open deal
            assert th["link_state"] == "linked", name
    assert {th["subject"] for th in threads(db, bccd_user.id, "bulk")} == {
        by_id[f"{n}@shapes.test"][1]["subject"] for n, sh in SHAPES.items()
        if sh.category == "bulk" and not sh.reply}
    hidden = {th["subject"] for th in threads(db, bccd_user.id, "person", "internal")}
    assert "Our November news" not in hidden and "Quote #42" in hidden


@BOTH_ENGINES
@pytest.mark.parametrize("name", ["zed.eml", "mailbox-full.eml", "office365.eml",
                                  "gmail-invalid-address.eml", "no-mx.eml", "delayed.eml"])
async def test_other_mtas_bounces_synced_are_bounces(
        name: str, dovecot: Dovecot, imap_user: str, add_account: Callable[..., int],
        settings: Settings, db: Database, sink: IngestSink, bccd_user: BccdUser) -> None:
    dovecot.append(imap_user, flanker_bounce(name))
    account = add_account(dovecot, imap_user)
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is None and result.stored == 1
    [th] = threads(db, bccd_user.id)
    assert (th["category"], th["link_state"], th["links"]) == ("bounce", "automated", [])


@BOTH_ENGINES
@pytest.mark.spec("5.13")
async def test_invites_update_one_meeting(
        dovecot: Dovecot, imap_user: str, add_account: Callable[..., int], settings: Settings,
        db: Database, sink: IngestSink, bccd_user: BccdUser) -> None:
    frm = "Bob Client <bob@client.test>"
    # Alice's answer is in Sent, which is synced first: it arrives before the invitation
    dovecot.append(imap_user, invite_mail(frm, USER_EMAIL, ics("REQUEST", attendees=PEOPLE),
                                          message_id="<inv-1@client.test>"))
    dovecot.append(imap_user, invite_mail(
        USER_EMAIL, BOB, ics("REPLY", attendees={USER_EMAIL: "ACCEPTED"}), method="REPLY",
        subject="Accepted: Kickoff", message_id="<rsvp-1@acme.test>",
        in_reply_to="<inv-1@client.test>"), "Sent")
    account = add_account(dovecot, imap_user)
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is None and result.stored == 2
    m, thread_id = _meeting(db, bccd_user.id)
    assert (m["summary"], m["status"], m["sequence"]) == ("Kickoff", "confirmed", 0)
    assert (m["start"], m["end"]) == ("2026-07-10T10:00:00+02:00", "2026-07-10T11:00:00+02:00")
    assert m["timezone"] == "W. Europe Standard Time" and m["organizer"] == BOB
    # the invitation at the same SEQUENCE keeps the answer Alice had already sent
    assert {a["email"]: a["answer"] for a in m["attendees"]} == {
        USER_EMAIL: "accepted", BOB: "accepted"}
    assert detail(db, bccd_user.id, thread_id)["meeting"]["uid"] == "kickoff-1@client.test"
    assert len(threads(db, bccd_user.id)) == 1          # the answer joined the invitation

    # moved (SEQUENCE 1): answers start again; Bob declines; a stale SEQUENCE 0 copy and
    # a broken calendar change nothing; a forged cancel from a stranger is ignored
    dovecot.append(imap_user, invite_mail(frm, USER_EMAIL, ics(
        "REQUEST", sequence=1, attendees=PEOPLE,
        start="DTSTART;TZID=W. Europe Standard Time:20261211T143000",
        end="DTEND;TZID=W. Europe Standard Time:20261211T153000"),
        message_id="<inv-2@client.test>", subject="Updated: Kickoff"))
    dovecot.append(imap_user, invite_mail(frm, USER_EMAIL, ics(
        "REPLY", sequence=1, attendees={BOB: "DECLINED"}), method="REPLY",
        message_id="<rsvp-2@client.test>", subject="Declined: Kickoff"))
    dovecot.append(imap_user, invite_mail(frm, USER_EMAIL,
                                          ics("REQUEST", summary="Old", attendees=PEOPLE),
                                          message_id="<inv-0@client.test>"))
    dovecot.append(imap_user, invite_mail("Mallory <m@evil.test>", USER_EMAIL,
                                          ics("CANCEL", sequence=5), method="CANCEL",
                                          message_id="<cancel-x@evil.test>"))
    dovecot.append(imap_user, invite_mail(frm, USER_EMAIL,
                                          ics("REQUEST", uid="", attendees=PEOPLE),
                                          message_id="<inv-x@client.test>",
                                          subject="Broken invite"))
    [second] = await sync_once(settings, db, sink, account_ids=[account])
    assert second.error is None and second.stored == 5   # the broken one as plain mail
    m, _ = _meeting(db, bccd_user.id)
    assert (m["summary"], m["sequence"], m["status"]) == ("Kickoff", 1, "confirmed")
    # December: the zone's winter offset, from the invite's own VTIMEZONE
    assert (m["start"], m["end"]) == ("2026-12-11T14:30:00+01:00", "2026-12-11T15:30:00+01:00")
    assert {a["email"]: a["answer"] for a in m["attendees"]} == {
        USER_EMAIL: "needs-action", BOB: "declined"}
    assert "Broken invite" in {th["subject"] for th in threads(db, bccd_user.id)}

    # the organizer cancels
    dovecot.append(imap_user, invite_mail(frm, USER_EMAIL, ics("CANCEL", sequence=2),
                                          method="CANCEL", message_id="<cancel-1@client.test>",
                                          subject="Canceled: Kickoff"))
    await sync_once(settings, db, sink, account_ids=[account])
    m, _ = _meeting(db, bccd_user.id)
    assert (m["status"], m["method"], m["sequence"]) == ("cancelled", "CANCEL", 2)


def _meeting(db: Database, user_id: int) -> tuple[dict[str, Any], int]:
    with db.read() as s:
        [meeting] = s.scalars(select(Meeting).where(Meeting.user_id == user_id)).all()
        return meeting.as_json(), meeting.thread_id


@BOTH_ENGINES
async def test_scope_known_skips_until_the_counterpart_is_a_person(
        dovecot: Dovecot, imap_user: str, add_account: Callable[..., int], settings: Settings,
        db: Database, sink: IngestSink, bccd_user: BccdUser) -> None:
    add_person(db, "Dana", "dana@known.test")
    dovecot.append(imap_user, make_message("Dana <dana@known.test>", USER_EMAIL,
                                           message_id="<d1@known.test>"))
    dovecot.append(imap_user, make_message("Erin <erin@later.test>", USER_EMAIL,
                                           message_id="<e1@later.test>"))
    dovecot.append(imap_user, make_message("Erin <erin@later.test>", USER_EMAIL,
                                           message_id="<e-old@later.test>"),
                   date=dt.datetime.now() - dt.timedelta(days=60))   # outside the window
    dovecot.append(imap_user, make_message("Finn <finn@other.test>", USER_EMAIL,
                                           message_id="<f1@other.test>"))
    account = add_account(dovecot, imap_user, scope="known")

    [first] = await sync_once(settings, db, sink, account_ids=[account])
    assert first.error is None and first.stored == 1
    assert sum(f.out_of_scope for f in first.folders) == 2
    assert [th["subject"] for th in threads(db, bccd_user.id)] == ["Hello"]
    [again] = await sync_once(settings, db, sink, account_ids=[account])
    assert sum(f.reexamined for f in again.folders) == 0    # no new person: nothing fetched

    add_person(db, "Erin", "erin@later.test")               # a person created afterwards
    [second] = await sync_once(settings, db, sink, account_ids=[account])
    assert sum(f.reexamined for f in second.folders) == 2 and second.stored == 1
    with db.read() as s:
        left = s.scalars(select(ImapScopeSkip.uid).where(ImapScopeSkip.account_id == account)).all()
    assert len(left) == 1                                  # Finn's, still nobody's
    senders = _senders(db, bccd_user.id)
    assert senders == {"dana@known.test", "erin@later.test"}   # not the old one

    with db.transaction() as s:                            # imap set --scope all
        accounts.update_account(s, account, scope="all")
    [third] = await sync_once(settings, db, sink, account_ids=[account])
    assert third.stored == 1 and "finn@other.test" in _senders(db, bccd_user.id)
    with db.read() as s:
        assert s.scalars(select(ImapScopeSkip).where(ImapScopeSkip.account_id == account)).all() == []


def _senders(db: Database, user_id: int) -> set[str]:
    with db.read() as s:
        return set(s.scalars(select(Message.from_addr).where(Message.user_id == user_id)))


@BOTH_ENGINES
async def test_unlinked_threads_stay_out_of_needs_linking(
        dovecot: Dovecot, imap_user: str, add_account: Callable[..., int], settings: Settings,
        db: Database, sink: IngestSink, bccd_user: BccdUser) -> None:
    add_deals(db, add_person(db, "Bob", BOB), "A", "B")
    dovecot.append(imap_user, SHAPES["newsletter"].build(BOB, USER_EMAIL))
    dovecot.append(imap_user, SHAPES["customer_mail"].build(BOB, USER_EMAIL))
    account = add_account(dovecot, imap_user)
    await sync_once(settings, db, sink, account_ids=[account])
    with db.read() as s:
        states = {c: st for c, st in s.execute(select(Thread.category, Thread.link_state))}
    assert states == {"bulk": "automated", "person": "needs_choice"}
