"""What filing does about automated and internal mail, bounces, meetings and the sync
scope (SPEC §5.10, §5.13, §7 "Scope") — the steps ``ingest.filing`` runs around one copy,
inside its transaction, on what its one read found (``CompanyMail``, ``engine.Known``).

Before the copy is stored:

1. ``out_of_scope`` — a synced copy of a ``scope = known`` mailbox none of whose
   counterparts (a bounce's failed recipients included) is a person of the company:
   ``skip`` records it for the next pass (``store.models.ImapScopeSkip``) and stores
   nothing.
2. ``category`` — ``ingest.categorize`` on the copy: the category and its reason.
3. ``categorize.handling`` with the company's settings: ``file`` (linked like any mail),
   ``unlinked`` (stored; no person created, nothing linked on its own, the thread it starts
   is ``automated``) or ``drop`` (``dropped``: accepted, counted, not stored — the
   pipeline records it as a rejection with the reason and counts it in
   ``bccd_messages_dropped_by_category_total``).

After it is stored (``after``):

- a bounce of a message the user sent — its returned ``From`` is the user's, or its
  returned Message-ID named a conversation the user has — marks each failed recipient
  ``bouncing`` on its person (``person_emails.bouncing_since``/``bounce_reason``);
- any other incoming message from an address marked bouncing, dated after the bounce,
  clears the mark (known from filing's read: no statement otherwise);
- a calendar invite updates the user's meeting (``ingest.meetings``); a calendar part
  that could not be read is logged with its reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from bccd import replies as R
from bccd.addresses import default_company_domains
from bccd.ingest import categorize, meetings
from bccd.ingest.categorize import Category
from bccd.ingest.outcome import Disposition, Outcome
from bccd.linking import categories as C
from bccd.linking import participants, threading
from bccd.linking.blocklist import Screened
from bccd.linking.persons import Hit
from bccd.log import get_logger
from bccd.store import direct
from bccd.store.models import (
    Alternate,
    ImapScopeSkip,
    PersonEmail,
    Thread,
    User,
    utcnow,
)
from bccd.store.queries import insert_ignore

if TYPE_CHECKING:
    from bccd.ingest.filing import FileRequest

log = get_logger("bccd.ingest")


@dataclass(frozen=True, slots=True)
class CompanyMail:
    """The company's settings for automated and internal mail, as filing read them."""

    automated_mail: str
    internal_mail: str
    domains: frozenset[str]      # its own mail domains (SPEC §1: default, its users')
    colleagues: int              # counterparts that are other users' addresses (0: none)


def company_mail(row: Any) -> CompanyMail:
    """From filing's one read (``filing._context_stmt``)."""
    explicit = row.company_domains
    domains = (explicit if explicit is not None
               else default_company_domains((row.login_domains or "").split(",")))
    return CompanyMail(row.automated_mail, row.internal_mail, frozenset(domains),
                       int(getattr(row, "colleagues", 0) or 0))


# ---------------------------------------------------------------- scope
def scope_emails(req: FileRequest) -> list[str]:
    """Addresses besides the counterparts whose persons filing reads: a bounce's failed
    recipients (they decide the sync scope and get marked bouncing)."""
    report = req.parsed.report
    return [f.email for f in report.failed] if report is not None else []


def out_of_scope(req: FileRequest, screened: Screened, persons: Mapping[str, Hit]) -> bool:
    if req.origin is None or req.origin.scope != "known":
        return False
    emails = [a.email for a in screened.linkable] + scope_emails(req)
    return not any(e in persons for e in emails)


_MARK = select(func.coalesce(func.max(PersonEmail.id), 0)).where(
    PersonEmail.company_id == select(User.company_id).where(User.id == bindparam("u"))
    .scalar_subquery())
_REMARK = (update(ImapScopeSkip).where(
    ImapScopeSkip.account_id == bindparam("a"), ImapScopeSkip.folder == bindparam("f"),
    ImapScopeSkip.uidvalidity == bindparam("v"), ImapScopeSkip.uid == bindparam("u"))
    .values(examined_mark=bindparam("m")))


def skip(s: Session, req: FileRequest, mark: int | None) -> Outcome:
    """Record a copy left out by the sync scope (``mark``: the company's newest person
    address before this copy was examined; read now if not given)."""
    o = req.origin
    assert o is not None
    conn = s.connection()
    if mark is None:
        mark = int(direct.execute(conn, _MARK, {"u": req.user_id}).scalar() or 0)
    insert_ignore(s, ImapScopeSkip, [{
        "account_id": o.account_id, "folder": o.folder, "uidvalidity": o.uidvalidity,
        "uid": o.uid, "examined_mark": mark, "message_date": req.parsed.date,
        "created_at": utcnow()}])
    direct.execute(conn, _REMARK, {"a": o.account_id, "f": o.folder, "v": o.uidvalidity,
                                   "u": o.uid, "m": mark})
    return Outcome(Disposition.SKIPPED, R.STORED,
                   reason="no counterpart is a person of the company (scope known)")


def mark_before(s: Session, req: FileRequest) -> int | None:
    """For a ``scope = known`` copy: the company's newest person address, read before the
    copy's persons are (so a person added meanwhile makes it examined again)."""
    if req.origin is None or req.origin.scope != "known":
        return None
    return int(direct.execute(s.connection(), _MARK, {"u": req.user_id}).scalar() or 0)


# ---------------------------------------------------------------- category
_THREADS = select(Thread.id).where(Thread.category.in_(C.HUMAN), Thread.automated.is_(False))


def category(s: Session, req: FileRequest, *, user_id: int, company_id: int, own: Collection[str],
             mail: CompanyMail, owners: Mapping[str, int] | None) -> Category:
    p = req.parsed
    direct_smtp = req.origin is None and req.forwarded_by is None
    counterparts = [a.email for a in participants.counterparts(
        req.direction, req.sender, p.to, p.cc, own, req.bcc_domain)]
    refs = p.thread_refs()

    def colleagues(addresses: list[str]) -> set[str]:
        if not mail.colleagues:
            return set()
        return _colleagues(s, company_id, user_id, addresses)

    def in_conversation() -> bool:
        found = ({owners[r] for r in refs if r in owners} if owners is not None
                 else set(threading.find(s, user_id, refs)))
        return bool(found) and s.scalar(
            _THREADS.where(Thread.id.in_(sorted(found))).limit(1)) is not None

    return categorize.categorize(categorize.Ask(
        signals=p.signals, report=p.report is not None and p.report.structured,
        null_sender=req.null_sender if direct_smtp else p.signals.return_path == "",
        sender=req.sender.email, replies=bool(refs),
        internal=lambda: categorize.internal(counterparts, mail.domains, colleagues),
        in_conversation=in_conversation))


def _colleagues(s: Session, company_id: int, user_id: int, addresses: Sequence[str]) -> set[str]:
    logins = s.scalars(select(User.email).where(
        User.company_id == company_id, User.id != user_id, User.email.in_(addresses)))
    alternates = s.scalars(select(Alternate.email).join(User, User.id == Alternate.user_id).where(
        User.company_id == company_id, Alternate.user_id != user_id,
        Alternate.status == "confirmed", Alternate.email.in_(addresses)))
    return {*logins, *alternates}


def drop(req: FileRequest, cat: Category, mail: CompanyMail) -> Outcome:
    setting = ("internal_mail" if cat.name == C.INTERNAL else "automated_mail")
    log.info("copy_dropped", user=req.user_id, reason="category", category=cat.name,
             detail=cat.reason, source=req.source.value, sender=req.sender.email,
             message_id=req.parsed.message_id)
    return Outcome(Disposition.DROPPED, R.STORED,
                   reason=f"{cat.name} mail dropped ({cat.reason}; {setting} = drop)",
                   extra={"category": cat.name})


# ---------------------------------------------------------------- after storing
@dataclass(frozen=True, slots=True)
class Stored:
    message_id: int
    thread_id: int
    created: bool              # the message started its thread


_MARK_BOUNCING = (update(PersonEmail).where(
    PersonEmail.company_id == bindparam("c"), PersonEmail.email == bindparam("e"),
    or_(PersonEmail.bouncing_since.is_(None), PersonEmail.bouncing_since < bindparam("at")))
    .values(bouncing_since=bindparam("at"), bounce_reason=bindparam("r")))
_CLEAR_BOUNCING = (update(PersonEmail).where(
    PersonEmail.company_id == bindparam("c"), PersonEmail.email == bindparam("e"),
    PersonEmail.bouncing_since < bindparam("at"))
    .values(bouncing_since=None, bounce_reason=None))


def after(s: Session, req: FileRequest, cat: Category, stored: Stored, *,
          owner: meetings.Owner, own: Collection[str], persons: Mapping[str, Hit]) -> None:
    p = req.parsed
    at = _date(p.date)
    report = p.report
    if cat.name == C.BOUNCE and report is not None and report.failed:
        returned_known = bool(report.returned_message_id) and not stored.created
        if report.returned_from in own or (report.returned_from is None and returned_known):
            for f in report.failed:
                if f.email in persons:
                    s.execute(_MARK_BOUNCING, {"c": owner.company_id, "e": f.email, "at": at,
                                               "r": f.reason() or "bounced"})
                    log.info("address_bouncing", user=owner.user_id, address=f.email,
                             status=f.status)
    elif req.direction == "incoming" and not req.unverified_sender:
        hit = persons.get(req.sender.email)
        if hit is not None and hit.bouncing_since is not None and at > hit.bouncing_since:
            s.execute(_CLEAR_BOUNCING, {"c": owner.company_id, "e": req.sender.email, "at": at})
            log.info("address_not_bouncing", user=owner.user_id, address=req.sender.email)
    if p.invite is not None:
        meetings.apply(s, p.invite, owner=owner, thread_id=stored.thread_id,
                       message_id=stored.message_id, sender=req.sender.email)
    if p.calendar_problems:
        log.info("calendar_not_read", user=owner.user_id, message=stored.message_id,
                 reasons=p.calendar_problems)


def _date(value: dt.datetime | None) -> dt.datetime:
    """A message's date for ordering bounces and later mail: its Date, else now (a date
    in the future counts as now)."""
    now = utcnow()
    return now if value is None or value > now else value.astimezone(dt.UTC)
