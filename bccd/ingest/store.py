"""Filing one copy for one user: dedup, blocklist, thread, participants, persons,
links, raw bytes and attachments — in one transaction (SPEC §5.2–5.6, §5.9).

Attachments are written to the blob store and fsynced *before* the
transaction commits; the raw message is committed in the same transaction as its
records, so ``250`` (sent by the caller after this returns) is backed by durable state.

The linking decisions are ``bccd.linking.engine``'s (screen → thread → link), the same
for Smart Bcc copies and IMAP-synced ones. Outcomes: ``STORED``; ``DUPLICATE`` (already
stored — the message gains the new source, a pinned address's link, the forwarding
record, and, for a Smart Bcc copy of a message first synced over IMAP, the persons only a
Smart Bcc copy may create); ``DROPPED`` (blocked: accepted, counted in ``counters`` as
``dropped_blocked`` and logged, not stored).

Dedup is the unique constraint on (user, dedup key): a concurrent second copy loses the
insert, what was made for it is rolled back to a savepoint and it is filed as a duplicate.

``file_in(session, request, digests)`` files inside the caller's transaction — the
database's group writer (``Database.write``), which commits many copies at once, each in
its own savepoint; ``file_copy`` is the blocking form for scripts. The hot path runs
statements built once, on the session's connection (see ``linking.threading``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bccd.auth.verdict import AuthVerdict
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.parse import Addr, Parsed
from bccd.ingest.types import ImapOrigin, Source
from bccd.linking import blocklist, deals, engine, participants, threading
from bccd.linking.records import Org, Owner
from bccd.log import get_logger
from bccd.notify import webhooks
from bccd.smtp import replies as R
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.models import (
    Attachment,
    Company,
    Counter,
    ImapMessageRef,
    Message,
    MessageRaw,
    MessageSource,
    Participant,
    Thread,
    User,
    utcnow,
)
from bccd.store.queries import insert_ignore

_INSERT_MESSAGE = insert(Message).returning(Message.id)
_INSERT_RAW = insert(MessageRaw)
_INSERT_SOURCE = insert(MessageSource)
_INSERT_ATTACHMENT = insert(Attachment)
_U, _C = User.__table__, Company.__table__
_OWNER = (select(_U.c.id, _U.c.company_id, _U.c.email, _U.c.is_admin, _U.c.linking_mode,
                 _U.c.sharing_default, _C.c.create_unknown_contacts)
          .join(_C, _C.c.id == _U.c.company_id).where(_U.c.id == bindparam("u")))
_DEDUP = select(Message.__table__.c.id).where(Message.__table__.c.user_id == bindparam("u"),
                                               Message.__table__.c.dedup_key == bindparam("k"))

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


def user_addresses(session: Session, user_id: int) -> set[str]:
    """The user's login address and confirmed alternates."""
    return participants.own_addresses(session, user_id)


def _copy(session: Session, req: FileRequest) -> engine.Copy:
    row = session.connection().execute(_OWNER, {"u": req.user_id}).one()
    user = Owner(row.id, row.company_id, row.email, row.is_admin, row.linking_mode,
                 row.sharing_default)
    company = Org(row.company_id, row.create_unknown_contacts)
    return engine.Copy(user=user, company=company, direction=req.direction, sender=req.sender,
                       to=req.parsed.to, cc=req.parsed.cc, bcc_domain=req.bcc_domain,
                       may_create_persons=req.source is Source.BCC)


def _add_source(session: Session, message: Message, req: FileRequest) -> None:
    had_bcc = session.scalar(select(MessageSource.id).where(
        MessageSource.message_id == message.id, MessageSource.source == Source.BCC.value))
    insert_ignore(session, MessageSource, [{"message_id": message.id, "source": req.source.value}])
    if req.origin is not None:
        _add_imap_ref(session, message.id, req.origin)
    if req.forwarded_by and not message.forwarded_by:
        message.forwarded_by = req.forwarded_by
    thread = session.get(Thread, message.thread_id)
    assert thread is not None
    copy = _copy(session, req)
    if req.source is Source.BCC and had_bcc is None:
        # first Smart Bcc copy of a message synced over IMAP: link as a Bcc copy would
        screened = engine.screen(session, copy)
        if screened.drop_reason is None:
            matched = engine.link(session, copy, screened, thread, pinned=req.pinned)
            for email, pid in matched.items():
                session.execute(update(Participant).where(
                    Participant.message_id == message.id, Participant.email == email,
                    Participant.person_id.is_(None)).values(person_id=pid))
            return
    if req.pinned is not None:
        deals.apply(session, thread, copy.user, pinned=req.pinned,
                    pinned_since=message.created_at)


def _add_imap_ref(session: Session, message_id: int, o: ImapOrigin) -> None:
    insert_ignore(session, ImapMessageRef, [{
        "message_id": message_id, "account_id": o.account_id, "folder": o.folder,
        "uidvalidity": o.uidvalidity, "uid": o.uid,
    }])


def _duplicate(s: Session, req: FileRequest) -> Outcome | None:
    found = s.connection().execute(
        _DEDUP, {"u": req.user_id, "k": req.parsed.dedup_key[:998]}).scalar()
    if found is None:
        return None
    existing = s.get(Message, found)
    assert existing is not None
    _add_source(s, existing, req)
    return Outcome(Disposition.DUPLICATE, R.STORED, reason="already stored",
                   message_id=existing.id, thread_id=existing.thread_id)


def put_blobs(blobs: BlobStore, req: FileRequest) -> list[str]:
    """Write (and fsync) the attachments: before the transaction that references them."""
    return [blobs.put(a.data) for a in req.parsed.attachments]


def file_in(s: Session, req: FileRequest, digests: list[str]) -> Outcome:
    """File one copy inside the caller's transaction (``Database.write``: a group commit)."""
    dup = _duplicate(s, req)
    if dup is not None:
        return dup
    if s.get_bind().dialect.name == "sqlite":
        # SQLite: this transaction holds the write lock since BEGIN IMMEDIATE, so no copy
        # can have been inserted since the check above
        return _file(s, req, digests)
    try:
        # PostgreSQL: a concurrent copy (another instance, another writer lane) may win the
        # insert under the (user, dedup key) constraint — the constraint waits for its
        # transaction, then refuses ours: undo what was made for it (thread, refs), and
        # it is a duplicate of the winner, now committed and visible
        with s.begin_nested():
            return _file(s, req, digests)
    except IntegrityError:
        dup = _duplicate(s, req)
        if dup is None:
            raise
        return dup


def file_copy(db: Database, blobs: BlobStore, req: FileRequest) -> Outcome:
    """Blocking: blobs, then ``file_in`` committed by the database's group writer."""
    digests = put_blobs(blobs, req)
    return db.write_sync(file_in, req, digests, size=len(req.raw))


def _file(s: Session, req: FileRequest, digests: list[str]) -> Outcome:
    p = req.parsed
    copy = _copy(s, req)
    user, company = copy.user, copy.company
    screened = engine.screen(s, copy)
    if screened.drop_reason is not None:
        return _drop(s, user.id, screened.drop_reason, req)
    thread, created = threading.resolve(
        s, user_id=user.id, company_id=company.id, message_id=p.message_id,
        refs=p.thread_refs(), gm_thrid=req.origin.gm_thrid if req.origin else None,
        subject=p.subject, visibility=user.sharing_default,
    )
    s.flush()  # the thread's ORM changes (an existing thread), before the plain inserts
    conn = s.connection()
    values = {
        "company_id": company.id, "user_id": user.id, "thread_id": thread.id,
        "dedup_key": p.dedup_key[:998], "message_id": p.message_id, "direction": req.direction,
        "from_addr": req.sender.email, "from_name": req.sender.name, "subject": p.subject,
        "date": p.date, "text_body": p.text, "html_body": p.html, "raw_size": len(req.raw),
        "raw_sha256": req.raw_sha256, "auth": req.auth.as_dict(),
        "forwarded_by": req.forwarded_by, "created_at": utcnow(),
    }
    # IntegrityError here: a concurrent duplicate (``file_in`` retries it as one)
    mid = conn.execute(_INSERT_MESSAGE, values).scalar_one()
    conn.execute(_INSERT_RAW, {"message_id": mid, "raw": req.raw})
    conn.execute(_INSERT_SOURCE, {"message_id": mid, "source": req.source.value,
                                  "created_at": values["created_at"]})
    matched = engine.link(s, copy, screened, thread, pinned=req.pinned, fresh=created)
    rows = [{"company_id": company.id, "message_id": mid, "role": "from",
             "email": req.sender.email, "name": req.sender.name,
             "person_id": matched.get(req.sender.email)}]
    for role, addrs in (("to", p.to), ("cc", p.cc)):
        rows.extend({"company_id": company.id, "message_id": mid, "role": role,
                     "email": a.email, "name": a.name, "person_id": matched.get(a.email)}
                    for a in addrs)
    insert_ignore(s, Participant, [r for r in rows if r["email"]])
    if digests:
        conn.execute(_INSERT_ATTACHMENT, [
            {"message_id": mid, "filename": att.filename, "content_type": att.content_type,
             "size": len(att.data), "sha256": digest, "content_id": att.content_id,
             "inline": att.inline}
            for att, digest in zip(p.attachments, digests, strict=True)])
    if req.origin is not None:
        _add_imap_ref(s, mid, req.origin)
    msg = Message(id=mid, **values)  # transient: what the hooks read, never added
    webhooks.message_stored(s, msg)  # the message.stored event commits with the message
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
