"""Filing one copy for one user: dedup, blocklist, thread, participants, persons,
links, raw bytes and attachments — in one transaction (SPEC §5.2–5.6, §5.9).

Attachments go to the configured blob store (``bccd.store.blobs``): with ``fs`` they are
written and fsynced *before* the transaction (``put_blobs``); with ``database`` only their
digests are computed then, and the bytes are written *in* the transaction, with the
message that references them (``bccd.store.dbblobs.store``, which also keeps a blob the
message names from being collected until the commit) — and only for a copy that is
stored, never for a duplicate. The raw message is committed in the same transaction as
its records, so ``250`` (sent by the caller after this returns) is backed by durable state.

The linking decisions are ``bccd.linking.engine``'s (screen → thread → link), the same
for Smart Bcc copies and IMAP-synced ones. Outcomes: ``STORED``; ``DUPLICATE`` (already
stored — the message gains the new source, a pinned address's link, the forwarding
record, and, for a Smart Bcc copy of a message first synced over IMAP, the persons only a
Smart Bcc copy may create, and the entity a composed message was written from);
``DROPPED`` (blocked: accepted, counted in ``counters`` as ``dropped_blocked`` and
logged, not stored — or a category the company drops, SPEC §5.10); ``SKIPPED`` (outside
a mailbox's sync scope, SPEC §7). Categories, bounces, meetings and the sync scope are
``ingest.triage``'s steps around the linking.

Dedup is the unique constraint on (user, dedup key): a concurrent second copy loses the
insert, and the group writer files it again — inside a savepoint then, where a refusal
undoes only what was made for it — as a duplicate (``file_in``).

``file_in(session, request, blobs)`` files inside the caller's transaction — the
database's group writer (``Database.write``), which commits many copies at once;
``file_copy`` is the blocking form for scripts. The hot path runs
statements built once, on the session's connection (see ``linking.threading``): one read
(``_context_stmt``: owner, dedup, the thread of the message's id, the counterparts'
persons …), then, for a copy of known counterparts that starts a thread, only inserts.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    func,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import replacement_traverse

from bccd import replies as R
from bccd.addresses import Addr
from bccd.auth.verdict import AuthVerdict
from bccd.errors import NotFound
from bccd.ingest import categorize, meetings, rows, triage
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.parse import Parsed
from bccd.ingest.rows import Digests as Digests  # the type of file_in's blobs
from bccd.ingest.types import ImapOrigin, Source
from bccd.linking import blocklist, deals, engine, manual, participants, threading
from bccd.linking.persons import Hit
from bccd.linking.records import Org, Owner
from bccd.log import get_logger
from bccd.store import direct, events
from bccd.store.blobs import Blobs, BlobStore, Prepared
from bccd.store.db import Database, rerun
from bccd.store.models import (
    Alternate,
    Blocked,
    Company,
    Counter,
    Item,
    Message,
    MessageSource,
    Organization,
    Participant,
    Person,
    PersonEmail,
    Thread,
    ThreadRef,
    User,
    utcnow,
)
from bccd.store.queries import FixedIn, domain_list, insert_ignore

# the sources that are the user's own sending (a Smart Bcc copy, a message written in bccd):
# linked as such, creating unknown persons (SPEC §5.5); IMAP sync never creates persons
_LINKED_AS_OWN = (Source.BCC, Source.COMPOSE)
users, companies, messages = User.__table__, Company.__table__, Message.__table__
sources, alternates, blocked = MessageSource.__table__, Alternate.__table__, Blocked.__table__
thread_refs, person_emails, items = ThreadRef.__table__, PersonEmail.__table__, Item.__table__
persons_t, orgs = Person.__table__, Organization.__table__
_FORWARDED_BY = (update(Message).where(Message.id == bindparam("m"))
                 .values(forwarded_by=bindparam("f")))
_THREAD = select(Thread.__table__.c.id, Thread.__table__.c.manual_items).where(
    Thread.__table__.c.id == bindparam("t"))


def _context_stmt(refs: int, person_in: Any, *, lock: bool = False) -> Any:
    """The one read of a copy (``_Context``): the owner and company; the message already
    stored under the dedup key :k, if any; whether the user has confirmed alternates and
    block patterns; the threads owning the ``refs`` ids :r0 … (columns ref0 …); and,
    joined (one row each, at least one row), the company's persons of the addresses in
    ``person_in``, whether each has an open item, and their organization if the user may
    see it (SPEC §5.11) and whether the address bounced (§5.10). Every part is an indexed
    lookup. And for categorizing (SPEC §5.10, ``ingest.triage``): the company's settings
    for automated and internal mail and its domains (when it names none, its users' login
    domains, aggregated), and how many of the addresses are other users' (``colleagues``).

    ``lock`` (PostgreSQL): when none of the copy's ids names a thread yet (it starts a
    conversation), the read also share-locks those persons, in id order, for the rest of
    the transaction — the lock ``linking.deals`` reads a person's items under — so the
    linking layer need not take it again; it still reads the items afterwards (this
    read's snapshot may predate an item committed while it waited). A reply takes that
    lock in the linking layer, after its thread's row."""
    dup = messages.alias("dup")
    logins = users.alias("logins")
    cols: list[Any] = [
        users.c.id, users.c.company_id, users.c.email, users.c.is_admin, users.c.linking_mode,
        users.c.sharing_default, companies.c.create_unknown_contacts, companies.c.slug.label("company_slug"),
        dup.c.id.label("dup_id"), dup.c.thread_id.label("dup_thread_id"),
        dup.c.forwarded_by.label("dup_forwarded_by"), dup.c.created_at.label("dup_created_at"),
        dup.c.category.label("dup_category"),
        exists().where(sources.c.message_id == dup.c.id, sources.c.source.in_(
            direct.literals([s.value for s in _LINKED_AS_OWN])))
        .label("dup_has_bcc"),
        exists().where(alternates.c.user_id == users.c.id, alternates.c.status == "confirmed")
        .label("has_alternates"),
        exists().where(blocked.c.user_id == users.c.id).label("has_blocked"),
        companies.c.automated_mail, companies.c.internal_mail,
        companies.c.domains.label("company_domains"),
        case((companies.c.domains.is_(None), select(domain_list(logins.c.email)).where(
            logins.c.company_id == users.c.company_id).scalar_subquery()),
            else_=null()).label("login_domains"),
        *(select(thread_refs.c.thread_id)
          .where(thread_refs.c.user_id == users.c.id, thread_refs.c.ref == bindparam(f"r{i}"))
          .scalar_subquery().label(f"ref{i}") for i in range(refs)),
    ]
    frm = users.join(companies, companies.c.id == users.c.company_id).outerjoin(
        dup, and_(dup.c.user_id == users.c.id, dup.c.dedup_key == bindparam("k")))
    if person_in is not None:
        cols += [person_emails.c.email.label("person_email"), person_emails.c.person_id,
                 exists().where(items.c.person_id == person_emails.c.person_id, items.c.status == "open")
                 .label("open_items"), orgs.c.id.label("organization_id"),
                 person_emails.c.bouncing_since, _colleagues(person_in).label("colleagues")]
        frm = (frm.outerjoin(person_emails, and_(person_emails.c.company_id == users.c.company_id, person_in))
               .outerjoin(persons_t, persons_t.c.id == person_emails.c.person_id)
               .outerjoin(orgs, and_(orgs.c.id == persons_t.c.organization_id,
                                     or_(users.c.is_admin, orgs.c.visible_to == "company",
                                         orgs.c.owner_id == users.c.id))))
        if lock:
            pe, p, owner = person_emails.alias("lock_pe"), persons_t.alias("lock_p"), users.alias("lock_u")
            refs_t = thread_refs.alias("lock_r")
            company = select(owner.c.company_id).where(owner.c.id == bindparam("u")).scalar_subquery()
            # a reply locks them later, after its thread (``linking.deals``): not here
            new = ~exists().where(refs_t.c.user_id == bindparam("u"), refs_t.c.ref.in_(
                [bindparam(f"r{i}") for i in range(refs)])) if refs else true()
            locked = (select(p.c.id).where(new, p.c.id.in_(select(pe.c.person_id).where(
                pe.c.company_id == company, ClauseAdapter(pe).traverse(person_in))))
                .order_by(p.c.id).with_for_update(read=True, of=p).subquery("locked"))
            cols.append(select(func.count()).select_from(locked).scalar_subquery()
                        .label("locked_persons"))
    return select(*cols).select_from(frm).where(users.c.id == bindparam("u"))


def _colleagues(person_in: ColumnElement[bool]) -> Any:
    """How many of the addresses ``person_in`` names are another user's of the owner's
    company: a login or a confirmed alternate (``ingest.triage``: 0 → none is)."""
    def swap(col: Any) -> ColumnElement[bool]:
        return replacement_traverse(  # type: ignore[call-overload,no-any-return]
            person_in, {}, lambda el: col if el is person_emails.c.email else None)
    u, a, au = users.alias("col_u"), alternates.alias("col_a"), users.alias("col_au")
    return (select(func.count()).select_from(u).where(
        u.c.company_id == users.c.company_id, u.c.id != users.c.id, swap(u.c.email))
        .scalar_subquery()
        + select(func.count()).select_from(a.join(au, au.c.id == a.c.user_id)).where(
            au.c.company_id == users.c.company_id, a.c.user_id != users.c.id,
            a.c.status == "confirmed", swap(a.c.email)).scalar_subquery())


# the ids of a copy are looked up in the context read in forms for 0, 1, 2, 4 … 16 ids
# (padded with the last); a longer References chain is left to ``threading.resolve``
_REF_FORMS = (0, 1, 2, 4, 8, 16)
_CONTEXT = {n: _context_stmt(n, None) for n in _REF_FORMS}
_CONTEXT_PERSONS = {n: FixedIn(person_emails.c.email, "e", functools.partial(_context_stmt, n))
                    for n in _REF_FORMS}
_CONTEXT_PERSONS_LOCKED = {n: FixedIn(person_emails.c.email, "e",
                                      functools.partial(_context_stmt, n, lock=True))
                           for n in _REF_FORMS}

log = get_logger("bccd.ingest")


@dataclass(frozen=True, slots=True)
class FileRequest:
    user_id: int
    raw: bytes
    parsed: Parsed
    source: Source
    direction: str                       # incoming | outgoing
    sender: Addr                         # the message's (or recovered original's) sender
    auth: AuthVerdict
    bcc_domain: str
    raw_sha256: str
    pinned: tuple[str, int] | None = None
    forwarded_by: str | None = None
    origin: ImapOrigin | None = None
    unverified_sender: bool = False      # synced, From claims the user, not proven (SPEC §7)
    chosen: tuple[str, int] | None = None  # composed: the entity it was written from (manual)
    null_sender: bool = False            # Smart Bcc: the envelope's MAIL FROM was <>


def user_addresses(session: Session, user_id: int) -> set[str]:
    """The user's login address and confirmed alternates."""
    return participants.own_addresses(session, user_id)


@dataclass(frozen=True, slots=True)
class _Stored:
    """The message already stored under the copy's dedup key."""

    id: int
    thread_id: int
    forwarded_by: str | None
    created_at: dt.datetime
    has_bcc: bool                # it has a Smart Bcc (or compose) source: linked as the user's
    category: str                # SPEC §5.10


@dataclass(frozen=True, slots=True)
class _Context:
    """What filing a copy reads before it writes, in one query (``_context_stmt``)."""

    copy: engine.Copy
    known: engine.Known
    stored: _Stored | None       # set: a duplicate
    owners: dict[str, int] | None  # the threads owning the copy's ids (None: not read)
    company_slug: str
    mail: triage.CompanyMail     # the company's settings for automated and internal mail
    mark: int | None = None      # scope known: the newest person address before the read


def _context(s: Session, req: FileRequest) -> _Context:
    p = req.parsed
    mark = triage.mark_before(s, req)
    ids = threading.all_refs(p.message_id, p.thread_refs(),
                             req.origin.gm_thrid if req.origin else None)
    # the counterparts whatever the user's own addresses are (known after this read)
    maybe = participants.counterparts(req.direction, req.sender, p.to, p.cc, (), req.bcc_domain)
    maybe += [Addr(e, "") for e in triage.scope_emails(req)
              if e not in {a.email for a in maybe}]
    params: dict[str, Any] = {"u": req.user_id, "k": p.dedup_key[:998]}
    nrefs = next((n for n in _REF_FORMS if n >= len(ids)), 0)
    for i in range(nrefs):
        params[f"r{i}"] = ids[min(i, len(ids) - 1)]
    stmt = _CONTEXT[nrefs]
    lock = bool(maybe) and s.get_bind().dialect.name == "postgresql"
    if maybe:
        forms = _CONTEXT_PERSONS_LOCKED if lock else _CONTEXT_PERSONS
        stmt, emails = forms[nrefs]([a.email for a in maybe])
        params.update(emails)
    conn = s.connection()
    found = direct.execute(conn, stmt, params)
    if not found:
        raise NoResultFound(f"no user {req.user_id}")
    row = found[0]
    user = Owner(row.id, row.company_id, row.email, row.is_admin, row.linking_mode,
                 row.sharing_default)
    mail = triage.company_mail(row)
    copy = engine.Copy(user=user, company=Org(row.company_id, row.create_unknown_contacts),
                       direction=req.direction, sender=req.sender, to=p.to, cc=p.cc,
                       bcc_domain=req.bcc_domain,
                       may_create_persons=req.source in _LINKED_AS_OWN,
                       company_domains=mail.domains)
    persons = {r.person_email: Hit(r.person_id, bool(r.open_items), r.organization_id,
                                   r.bouncing_since)
               for r in found if maybe and r.person_email is not None}
    owners: dict[str, int] | None = None  # not read: threading reads them
    if len(ids) <= nrefs:
        owners = {ref: tid for i, ref in enumerate(ids)
                  if (tid := getattr(row, f"ref{i}")) is not None}
    known = engine.Known(
        alternates=participants.confirmed_alternates(s, user.id) if row.has_alternates else (),
        patterns=blocklist.patterns(s, user.id) if row.has_blocked else (),
        # locked only when the read found no thread for the copy (``_context_stmt``)
        persons=persons, persons_locked=lock and owners is not None and not owners)
    stored = None if row.dup_id is None else _Stored(
        row.dup_id, row.dup_thread_id, row.dup_forwarded_by, row.dup_created_at,
        bool(row.dup_has_bcc), row.dup_category)
    return _Context(copy, known, stored, owners, row.company_slug, mail, mark)


def _add_source(s: Session, req: FileRequest, ctx: _Context, message: _Stored) -> None:
    conn = s.connection()
    insert_ignore(s, MessageSource, [{"message_id": message.id, "source": req.source.value}])
    if req.origin is not None:
        rows.insert_imap_ref(s, message.id, req.origin)
    if req.forwarded_by and not message.forwarded_by:
        direct.execute(conn, _FORWARDED_BY, {"m": message.id, "f": req.forwarded_by})
    if req.chosen is not None:
        _link_chosen(s, message.thread_id, req.chosen)
    first_bcc = req.source in _LINKED_AS_OWN and not message.has_bcc
    if not first_bcc and req.pinned is None:
        return
    row = direct.execute(conn, _THREAD, {"t": message.thread_id}).one()
    thread = threading.ThreadRow(row.id, bool(row.manual_items))
    copy = ctx.copy
    linked = categorize.handling(message.category, ctx.mail.automated_mail,
                                 ctx.mail.internal_mail) == categorize.FILE
    if first_bcc and linked:
        # first Smart Bcc copy of a message synced over IMAP: link as a Bcc copy would
        # (not mail kept "unlinked", SPEC §5.10)
        screened = engine.screen(s, copy, ctx.known)
        if screened.drop_reason is None:
            matched = engine.link(s, copy, screened, thread, pinned=req.pinned, known=ctx.known)
            for email, pid in matched.items():
                s.execute(update(Participant).where(
                    Participant.message_id == message.id, Participant.email == email,
                    Participant.person_id.is_(None)).values(person_id=pid))
            return
    if req.pinned is not None:
        deals.apply(s, thread, copy.user, pinned=req.pinned, pinned_since=message.created_at)


def _link_chosen(s: Session, thread_id: int, chosen: tuple[str, int]) -> None:
    """A composed message is linked to the entity it was written from, ``how = manual``
    (SPEC §12): the user's explicit choice, like a link made by hand."""
    thread = s.get(Thread, thread_id)
    if thread is None:
        return
    try:
        with s.begin_nested():
            manual.link(s, thread, chosen[0], chosen[1], None)
    except NotFound:  # the entity was deleted meanwhile: the message is filed all the same
        log.info("compose_link_gone", thread=thread_id, kind=chosen[0], id=chosen[1])


def _duplicate(s: Session, req: FileRequest, ctx: _Context, stored: _Stored) -> Outcome:
    _add_source(s, req, ctx, stored)
    return Outcome(Disposition.DUPLICATE, R.STORED, reason="already stored",
                   message_id=stored.id, thread_id=stored.thread_id)


def put_blobs(blobs: Blobs | BlobStore, req: FileRequest) -> Prepared:
    """Before the transaction: the attachments written and fsynced (``fs``, or a bare file
    store), or only their digests (``database``: ``file_in`` writes the bytes with the
    message)."""
    return Blobs.wrap(blobs).prepare([a.data for a in req.parsed.attachments])


def file_in(s: Session, req: FileRequest, digests: Digests) -> Outcome:
    """File one copy inside the caller's transaction (``Database.write``: a group commit);
    ``digests`` is what ``put_blobs`` returned.

    A copy already stored is a duplicate. On PostgreSQL a concurrent copy (another
    instance, another writer lane) may win the insert under the (user, dedup key)
    constraint after that check: the constraint waits for the winner's transaction, then
    refuses ours with ``IntegrityError``. The first run takes no savepoint for that rare
    case (a SAVEPOINT and its RELEASE were two of a copy's 15 statements): the refusal
    ends the group's transaction, and the group writer runs the copy again. A rerun
    (``store.db.rerun``) files inside a savepoint of its own, so that a refusal there —
    yet another concurrent copy — only undoes what was made for the copy (thread,
    references), and the copy is then a duplicate of the winner, committed and visible.
    (SQLite: this transaction holds the write lock since BEGIN IMMEDIATE, so no copy can
    have been inserted since the check.)"""
    ctx = _context(s, req)
    if ctx.stored is not None:
        return _duplicate(s, req, ctx, ctx.stored)
    if not rerun(s) or s.get_bind().dialect.name == "sqlite":
        return _file(s, req, digests, ctx)
    try:
        with s.begin_nested():
            return _file(s, req, digests, ctx)
    except IntegrityError:
        ctx = _context(s, req)
        if ctx.stored is None:
            raise
        return _duplicate(s, req, ctx, ctx.stored)


def file_then(s: Session, req: FileRequest, digests: Digests,
              then: Callable[[Session, Outcome], None] | None) -> Outcome:
    """``file_in``, then ``then(session, outcome)`` in the same transaction (a composed
    message's send record commits with the message, or neither does)."""
    out = file_in(s, req, digests)
    if then is not None:
        then(s, out)
    return out


def file_copy(db: Database, blobs: Blobs | BlobStore, req: FileRequest) -> Outcome:
    """Blocking: blobs, then ``file_in`` committed by the database's group writer."""
    digests = put_blobs(blobs, req)
    return db.write_sync(file_in, req, digests, size=len(req.raw))


def _file(s: Session, req: FileRequest, blobs: Digests, ctx: _Context) -> Outcome:
    p = req.parsed
    copy = ctx.copy
    user, company = copy.user, copy.company
    screened = engine.screen(s, copy, ctx.known)
    if screened.drop_reason is not None:
        return _drop(s, user.id, screened.drop_reason, req)
    if triage.out_of_scope(req, screened, ctx.known.persons):
        return triage.skip(s, req, ctx.mark)
    own = {user.email, *ctx.known.alternates}
    cat = triage.category(s, req, user_id=user.id, company_id=company.id, own=own,
                          mail=ctx.mail, owners=ctx.owners)
    handling = categorize.handling(cat.name, ctx.mail.automated_mail, ctx.mail.internal_mail)
    if handling == categorize.DROP:
        return triage.drop(req, cat, ctx.mail)
    unlinked = handling == categorize.UNLINKED
    thread, created = threading.resolve(
        s, user_id=user.id, company_id=company.id, message_id=p.message_id,
        refs=p.thread_refs(), gm_thrid=req.origin.gm_thrid if req.origin else None,
        subject=p.subject, visibility=user.sharing_default, owners=ctx.owners,
        kind=threading.Kind(cat.name, unlinked),
    )
    s.flush()  # the thread's ORM changes (an existing thread), before the plain inserts
    conn = s.connection()
    values = {
        "company_id": company.id, "user_id": user.id, "thread_id": thread.id,
        "dedup_key": p.dedup_key[:998], "message_id": p.message_id, "direction": req.direction,
        "from_addr": req.sender.email, "from_name": req.sender.name, "subject": p.subject,
        "date": p.date, "text_body": p.text, "html_body": p.html, "raw_size": len(req.raw),
        "raw_sha256": req.raw_sha256, "auth": req.auth.as_dict(),
        "forwarded_by": req.forwarded_by, "unverified_sender": req.unverified_sender,
        "created_at": utcnow(), "category": cat.name, "category_reason": cat.reason[:1000],
    }
    # IntegrityError here: a concurrent duplicate (``file_in``: filed again, it is one)
    mid = rows.insert_message(conn, values, req.raw, req.source.value)
    if unlinked:  # SPEC §5.10: no person made, nothing linked on its own
        matched: dict[str, int] = {}
        if req.pinned is not None:  # the user's explicit choice all the same
            deals.apply(s, thread, user, pinned=req.pinned, thread_locked=True)
    else:
        matched = engine.link(s, copy, screened, thread, pinned=req.pinned, fresh=created,
                              known=ctx.known, thread_locked=True)  # resolve wrote its row
    people = [{"company_id": company.id, "message_id": mid, "role": "from",
             "email": req.sender.email, "name": req.sender.name,
             "person_id": matched.get(req.sender.email)}]
    for role, addrs in (("to", p.to), ("cc", p.cc)):
        people.extend({"company_id": company.id, "message_id": mid, "role": role,
                     "email": a.email, "name": a.name, "person_id": matched.get(a.email)}
                    for a in addrs)
    insert_ignore(s, Participant, [r for r in people if r["email"]])
    if p.attachments:
        rows.insert_attachments(s, mid, p.attachments, blobs)
    if req.origin is not None:
        rows.insert_imap_ref(s, mid, req.origin)
    if req.chosen is not None:
        _link_chosen(s, thread.id, req.chosen)
    triage.after(s, req, cat, triage.Stored(mid, thread.id, created),
                 owner=meetings.Owner(user.id, company.id, user.email, ctx.company_slug),
                 own=own, persons=ctx.known.persons)
    if events.enabled(s):  # the message.stored event commits with the message
        events.message_stored(s, Message(id=mid, **values),  # transient, never added
                                user_email=user.email, company_slug=ctx.company_slug)
    return Outcome(Disposition.STORED, R.STORED, message_id=mid, thread_id=thread.id,
                   extra={"thread_created": created})


def _drop(s: Session, user_id: int, reason: str, req: FileRequest) -> Outcome:
    insert_ignore(s, Counter, [{"user_id": user_id, "name": blocklist.DROP_COUNTER, "value": 0}])
    s.execute(update(Counter)
              .where(Counter.user_id == user_id, Counter.name == blocklist.DROP_COUNTER)
              .values(value=Counter.value + 1))
    log.info("copy_dropped", user=user_id, reason=reason, source=req.source.value,
             sender=req.sender.email, message_id=req.parsed.message_id)
    return Outcome(Disposition.DROPPED, R.STORED, reason=reason)
