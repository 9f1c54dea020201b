"""The right to erasure of one address: ``bccd erase ADDRESS (--company SLUG | --all-companies)``.

``erase_address(db, blobs, address, company=…|all_companies=True, grace=…)`` → ``Removal``.
Within the scope (one company, or every company), in one transaction:

- every message in which the address is a participant (From, To, Cc — as extracted at
  filing) with its raw bytes, participants, attachments and sources; a thread left
  without messages goes too, one that keeps messages takes its subject from its first
  remaining message;
- every person record holding the address (with all its emails), and the links to it
  (the threads that keep messages lose the automatic organization links that came with
  the person, and their ``link_state`` follows);
- quarantined copies from it or naming it (From, envelope, raw header or body);
- meetings (SPEC §5.13) it organizes or attends;
- refused-copy records naming it; notices about it; alternates and blocked-list entries
  that are exactly this address; outbox jobs whose payload holds it; mail written in bccd
  to or from it that was not filed (refused, or not filed yet).

After the commit, attachment blobs no message references any more are deleted from
either store (``dbgc.collect_all``; file-store ones written within ``grace`` are left to
the periodic collector and counted as ``deferred``). A blob another message still uses
— of any company: blobs are content-addressed and shared — is kept.

The address of a user's login is refused (``Invalid``): a user is offboarded with
``bccd user delete``. Addresses are compared normalized (lowercase, IDNA A-label); free
text (quarantined raw bytes, From headers) is searched for both the A-label and the
Unicode form. ``dry_run=True`` reports the counts and changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import idna
from sqlalchemy import Text, and_, cast, exists, false, func, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bccd import accounts
from bccd.errors import Invalid
from bccd.lifecycle import cascade
from bccd.lifecycle.offboard import Removal, collect_blobs
from bccd.linking import linkstate, organizations
from bccd.log import get_logger
from bccd.store.blobs import Blobs
from bccd.store.db import Database
from bccd.store.models import (
    Alternate,
    Blocked,
    Company,
    ConfirmationSend,
    Link,
    Meeting,
    Message,
    Notice,
    OutboxJob,
    Participant,
    Person,
    PersonEmail,
    Quarantined,
    Rejection,
    Suggestion,
    Thread,
    User,
)
from bccd.store.models_compose import Send

log = get_logger("bccd.lifecycle")


def spellings(address: str) -> set[str]:
    """The normalized address and its Unicode-domain form (as free text may hold it)."""
    local, _, domain = address.rpartition("@")
    out = {address}
    try:
        out.add(f"{local}@{idna.decode(domain)}".lower())
    except idna.IDNAError:
        pass
    return out


def erase_address(db: Database, blobs: Blobs, address: str, *, company: str | None = None,
                  all_companies: bool = False, grace: float, dry_run: bool = False) -> Removal:
    if all_companies == (company is not None):
        raise Invalid("name the company (--company SLUG) or erase in --all-companies")
    addr = accounts.parse_email_arg(address, "address")
    with cascade.transaction(db, dry_run=dry_run) as s:
        if company is not None:
            c = accounts.get_company(s, company)
            company_ids: list[int] | None = [c.id]
            scope = f"company {c.slug}"
        else:
            company_ids = None
            scope = "all companies"
        _refuse_user_login(s, addr, company_ids)
        removal = Removal(f"{addr} in {scope}", dry_run=dry_run)
        digests = _erase(s, addr, company_ids, removal)
    collect_blobs(db, blobs, digests, grace, removal)
    log.info("address_erased", **removal.as_dict())
    return removal


def _in(column: Any, ids: Collection[int] | None) -> ColumnElement[bool]:
    """``column IN ids``; ``None`` means no restriction (every company)."""
    if ids is None:
        return true()
    return column.in_(sorted(ids)) if ids else false()


def _refuse_user_login(s: Session, addr: str, company_ids: list[int] | None) -> None:
    login = s.scalar(select(User.email).where(User.email == addr, _in(User.company_id, company_ids)))
    if login is not None:
        raise Invalid(f"{addr} is a user's login: offboard the user with `bccd user delete {addr}`")


def _erase(s: Session, addr: str, company_ids: list[int] | None, removal: Removal) -> set[str]:
    texts = spellings(addr)
    user_ids = list(s.scalars(select(User.id).where(_in(User.company_id, company_ids))))
    removed: dict[str, int] = {}

    # messages (and the threads they leave empty)
    involved = or_(
        Message.from_addr == addr,
        exists().where(Participant.message_id == Message.id, Participant.email == addr,
                       _in(Participant.company_id, company_ids)),
    )
    msg_filter = and_(_in(Message.company_id, company_ids), involved)
    digests = cascade.attachment_digests(s, msg_filter)
    thread_ids = set(s.scalars(select(Message.thread_id).distinct().where(msg_filter)))
    msg_ids = list(s.scalars(select(Message.id).where(msg_filter)))
    cascade.add_counts(removed, cascade.cascade_counts(
        s, cascade.table("messages"), cascade.in_ids(cascade.table("messages").c.id, msg_ids)))
    cascade.delete_ids(s, Message, msg_ids)
    emptied = [t for t in sorted(thread_ids) if s.scalar(
        select(func.count()).select_from(Message).where(Message.thread_id == t)) == 0]
    if emptied:
        cascade.add_counts(removed, cascade.cascade_counts(
            s, cascade.table("threads"), cascade.in_ids(cascade.table("threads").c.id, emptied)))
        cascade.delete_ids(s, Thread, emptied)
    for t in sorted(thread_ids - set(emptied)):
        first = s.scalar(select(Message.subject).where(Message.thread_id == t)
                         .order_by(Message.date, Message.id).limit(1))
        thread = s.get(Thread, t)
        if thread is not None and first is not None:
            thread.subject = first

    # persons holding the address, and what points at them without a foreign key
    person_ids = list(s.scalars(select(PersonEmail.person_id).distinct().where(
        PersonEmail.email == addr, _in(PersonEmail.company_id, company_ids))))
    if person_ids:
        cascade.add_counts(removed, cascade.cascade_counts(
            s, cascade.table("persons"), cascade.in_ids(cascade.table("persons").c.id, person_ids)))
        linked = s.execute(select(Link.id, Link.thread_id).where(
            Link.kind == "person", Link.entity_id.in_(person_ids))).all()
        links = [int(i) for i, _ in linked]
        suggestions = list(s.scalars(select(Suggestion.id).where(
            Suggestion.kind == "person", Suggestion.entity_id.in_(person_ids))))
        cascade.add_counts(removed, {"links": cascade.delete_ids(s, Link, links),
                                     "suggestions": cascade.delete_ids(s, Suggestion, suggestions)})
        cascade.delete_ids(s, Person, person_ids)
        # the threads that keep their messages: their organizations and state follow
        kept = [int(t) for _, t in linked]
        organizations.sync(s, kept)
        linkstate.refresh(s, kept)

    # quarantine: the From column, then the envelope and raw bytes
    q_ids = []
    rows = s.execute(select(Quarantined.id, Quarantined.from_addr, Quarantined.envelope,
                            Quarantined.raw).where(_in(Quarantined.user_id, user_ids))
                     .execution_options(yield_per=100))
    needles = [t.encode("utf-8") for t in texts]
    for qid, from_addr, envelope, raw in rows:
        if (from_addr or "").lower() == addr or cascade.mentions(envelope, addresses=texts) \
                or any(n in bytes(raw).lower() for n in needles):
            q_ids.append(int(qid))
    cascade.add_counts(removed, {"quarantine": cascade.delete_ids(s, Quarantined, q_ids)})

    # meetings it organizes or attends
    named = or_(Meeting.organizer == addr, *[cast(Meeting.attendees, Text).contains(
        t, autoescape=True) for t in sorted(texts)])
    m_ids = [int(i) for i, org, people in s.execute(
        select(Meeting.id, Meeting.organizer, Meeting.attendees)
        .where(_in(Meeting.company_id, company_ids), named))
        if org == addr or any(str(a.get("email", "")) == addr for a in people or [])]
    cascade.add_counts(removed, {"meetings": cascade.delete_ids(s, Meeting, m_ids)})

    # refused-copy records: the user's, or user-less ones to the companies' addresses
    if company_ids is None:
        rej_scope: ColumnElement[bool] = true()
    else:
        slugs = list(s.scalars(select(Company.slug).where(Company.id.in_(company_ids))))
        rej_scope = or_(_in(Rejection.user_id, user_ids), and_(
            Rejection.user_id.is_(None),
            or_(*[Rejection.recipient.startswith(f"{sl}+", autoescape=True) for sl in slugs])))
    said = or_(*[func.lower(col).contains(t, autoescape=True)
                 for col in (Rejection.recipient, Rejection.mail_from, Rejection.from_header,
                             cast(Rejection.auth, Text))
                 for t in sorted(texts)])
    rej_ids = list(s.scalars(select(Rejection.id).where(rej_scope, said)))
    cascade.add_counts(removed, {"rejections": cascade.delete_ids(s, Rejection, rej_ids)})

    # records that are exactly this address
    exact = {
        "notices": (Notice, select(Notice.id).where(
            func.lower(Notice.address) == addr, _in(Notice.user_id, user_ids))),
        "alternates": (Alternate, select(Alternate.id).where(
            func.lower(Alternate.email) == addr, _in(Alternate.user_id, user_ids))),
        "confirmation_sends": (ConfirmationSend, select(ConfirmationSend.id).where(
            func.lower(ConfirmationSend.email) == addr, _in(ConfirmationSend.user_id, user_ids))),
        "blocked": (Blocked, select(Blocked.id).where(
            func.lower(Blocked.pattern) == addr, _in(Blocked.user_id, user_ids))),
    }
    for name, (model, query) in exact.items():
        cascade.add_counts(removed, {name: cascade.delete_ids(s, model, list(s.scalars(query)))})

    # mail written in bccd and not filed (refused, or sent but not filed yet): its recipients
    # and its first answer; a filed one went with its message above
    send_said = or_(Send.envelope_from == addr, *[
        func.lower(col).contains(t, autoescape=True)
        for col in (cast(Send.pending, Text), cast(Send.accepted, Text), cast(Send.refused, Text),
                    cast(Send.response, Text))
        for t in sorted(texts)])
    send_ids = list(s.scalars(select(Send.id).where(_in(Send.user_id, user_ids), send_said)))
    cascade.add_counts(removed, {"sends": cascade.delete_ids(s, Send, send_ids)})

    jobs = cascade.outbox_jobs_mentioning(s, addresses=texts)
    cascade.add_counts(removed, {"outbox": cascade.delete_ids(s, OutboxJob, jobs)})
    removal.removed = removed
    return digests
