"""Domain events, written in the same transaction as the change they describe
(SPEC §9 webhooks): a transactional outbox. ``bccd.notify.webhooks`` delivers them.

Events (``type``):

- ``message.stored`` — a new message was filed (Smart Bcc, IMAP, or released from
  quarantine); emitted by ``ingest.filing`` through :func:`message_stored`.
- ``message.quarantined`` — a copy was kept in quarantine (``quarantine.hold.keep``,
  :func:`message_quarantined`).
- ``message.sent`` / ``message.send_failed`` — a message written in bccd went out to every
  recipient that accepted it, or was given up on (``bccd.compose.send``, :func:`send_outcome`).
- ``message.opened`` / ``link.clicked`` — the first human open of a message sent from bccd
  with tracking, and the first human click of each of its links (SPEC §13;
  ``bccd.tracking.hits``, :func:`tracking_hit`), a few seconds after the hit, once it is
  certain a machine did not make it.
- ``thread.linked`` — a thread gained a link it did not have: a deal, lead or project
  however it was made (automatic, per-entity address, by hand, retroactively — the one
  place is ``linking.deals.set_item_link``, :func:`item_linking`), or a person or
  organization linked by hand (``linking.manual.link``, :func:`linked`). It carries the
  thread's ``link_state`` (SPEC §5.12) once the change is made: ``linked`` for an item
  link; for a person or organization, what the linking rule made of the thread after it.
- ``meeting.updated`` — a calendar invite created or changed a meeting (SPEC §5.13: a
  REQUEST, a REPLY's answer, a CANCEL); emitted by ``ingest.meetings`` through
  :func:`meeting_updated` with the meeting as the thread JSON shows it.

Each is an outbox job (``store.outbox.add``, kind ``webhook``) added in the *caller's*
transaction, so an event exists exactly when the change it describes was committed.
Events are only queued where a delivery target is configured: ``attach(db, settings)``
records, for that database's engine, whether ``webhooks.url`` is set; ``bccd serve``
and every one-shot command (``mail link``, ``person create`` …) attach, and the outbox
worker of ``bccd serve`` delivers what they queued.

Payloads carry ``user_id`` and ``company_id``, so offboarding and erasure
(``bccd.lifecycle.cascade``) find and remove a user's queued events.
"""

from __future__ import annotations

import uuid
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bccd.store import outbox
from bccd.store.models import Company, Link, Thread, User, utcnow

if TYPE_CHECKING:
    from bccd.config import Settings
    from bccd.store.db import Database
    from bccd.store.models import Meeting, Message, Quarantined

KIND = "webhook"
EVENT_TYPES = ("message.stored", "message.quarantined", "thread.linked", "message.sent",
               "message.send_failed", "message.opened", "link.clicked", "meeting.updated")

_attached: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def attach(db: Database, settings: Settings) -> bool:
    """Queue events for this database when ``webhooks.url`` is configured; True if so."""
    enabled = bool(settings.webhooks.url)
    _attached[db.engine] = enabled
    return enabled


def enabled(session: Session) -> bool:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", None)
    return engine is not None and _attached.get(engine, False)


def new_id() -> str:
    return "msg_" + uuid.uuid4().hex


def emit(session: Session, type_: str, data: dict[str, Any], *, user_id: int | None,
         company_id: int) -> int | None:
    """Queue one event in the caller's transaction (nothing when webhooks are off): the
    outbox job's id."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event {type_!r}")
    if not enabled(session):
        return None
    payload = {
        "webhook_id": new_id(),
        "user_id": user_id,
        "company_id": company_id,
        "event": {"type": type_, "timestamp": utcnow().isoformat(), "data": data},
    }
    return outbox.add(session, KIND, payload)


def _company_slug(session: Session, company_id: int) -> str:
    company = session.get(Company, company_id)
    return company.slug if company is not None else ""


def _user_email(session: Session, user_id: int) -> str:
    user = session.get(User, user_id)
    return user.email if user is not None else ""


_T = Thread.__table__
_STATE = select(_T.c.link_state).where(_T.c.id == bindparam("t"))
_L = Link.__table__
_LINKS = (select(_L.c.kind, _L.c.entity_id, _L.c.how).where(_L.c.thread_id == bindparam("t"))
          .order_by(_L.c.id))


def _links(session: Session, thread_id: int) -> list[dict[str, Any]]:
    session.flush()
    rows = session.connection().execute(_LINKS, {"t": thread_id}).all()
    return [{"kind": k, "id": e, "how": h} for k, e, h in rows]


# ------------------------------------------------------------------ the hooks
def message_stored(session: Session, msg: Message, *, user_email: str | None = None,
                   company_slug: str | None = None) -> None:
    """``ingest.filing``: a new message (call after its links are made). The owner's
    address and the company's slug are read unless given."""
    if not enabled(session):
        return
    session.flush()
    emit(session, "message.stored", {
        "message_id": msg.id,
        "thread_id": msg.thread_id,
        "rfc822_message_id": msg.message_id,
        "user": user_email if user_email is not None else _user_email(session, msg.user_id),
        "company": (company_slug if company_slug is not None
                    else _company_slug(session, msg.company_id)),
        "direction": msg.direction,
        "category": msg.category,
        "from": msg.from_addr,
        "subject": msg.subject,
        "date": msg.date.isoformat() if msg.date else None,
        "links": _links(session, msg.thread_id),
    }, user_id=msg.user_id, company_id=msg.company_id)


def message_quarantined(session: Session, row: Quarantined, company_id: int) -> None:
    """``quarantine.hold.keep``: a copy was kept for the user to review."""
    if not enabled(session):
        return
    emit(session, "message.quarantined", {
        "quarantine_id": row.id,
        "user": _user_email(session, row.user_id),
        "company": _company_slug(session, company_id),
        "from": row.from_addr,
        "subject": row.subject,
    }, user_id=row.user_id, company_id=company_id)


def send_outcome(session: Session, type_: str, data: dict[str, Any], *, user_id: int) -> None:
    """``compose.send``: ``message.sent`` or ``message.send_failed`` for one send (``data``:
    the message's ids, the recipients accepted and refused, the reason)."""
    user = session.get(User, user_id)
    if user is None:
        return
    emit(session, type_, {"user": user.email, "company": _company_slug(session, user.company_id),
                          **data}, user_id=user_id, company_id=user.company_id)


def tracking_hit(session: Session, type_: str, data: dict[str, Any], *, user_id: int) -> None:
    """``tracking.hits``: ``message.opened`` or ``link.clicked`` (``data``: the message's
    ids, when, and for a click the link's index and URL)."""
    user = session.get(User, user_id)
    if user is None:
        return
    emit(session, type_, {"user": user.email, "company": _company_slug(session, user.company_id),
                          **data}, user_id=user_id, company_id=user.company_id)


def linked(session: Session, thread: Thread, kind: str, entity_id: int, how: str, *,
           link_state: str | None = None) -> None:
    """A thread gained the link (kind, entity_id); the caller knows it is new, and calls
    this once the thread's ``link_state`` is up to date (or gives the state it will
    have)."""
    if not enabled(session):
        return
    if link_state is None:
        session.flush()
        link_state = session.connection().execute(_STATE, {"t": thread.id}).scalar()
    emit(session, "thread.linked", {
        "thread_id": thread.id,
        "owner": _user_email(session, thread.owner_id),
        "company": _company_slug(session, thread.company_id),
        "link": {"kind": kind, "id": entity_id, "how": how},
        "link_state": link_state,
    }, user_id=thread.owner_id, company_id=thread.company_id)


def item_linking(session: Session, thread_id: int, kind: str, item_id: int, how: str) -> None:
    """``linking.deals.set_item_link``, *before* it writes: emits ``thread.linked`` when
    (kind, item_id) is not linked to the thread yet (a re-link of the same item — a
    redelivered copy, a manual confirmation of an automatic link — is no new event)."""
    if not enabled(session):
        return
    exists = session.scalar(select(Link.id).where(
        Link.thread_id == thread_id, Link.kind == kind, Link.entity_id == item_id))
    thread = session.get(Thread, thread_id)
    if exists is None and thread is not None:
        linked(session, thread, kind, item_id, how, link_state="linked")  # once written


def meeting_updated(session: Session, meeting: Meeting, *, message_id: int, change: str,
                    user_email: str, company_slug: str) -> None:
    """``ingest.meetings``: the meeting was created or changed by message ``message_id``
    (``change``: created, updated, answered, cancelled)."""
    if not enabled(session):
        return
    session.flush()
    emit(session, "meeting.updated", {
        "meeting": meeting.as_json(),
        "change": change,
        "thread_id": meeting.thread_id,
        "message_id": message_id,
        "user": user_email,
        "company": company_slug,
    }, user_id=meeting.user_id, company_id=meeting.company_id)
