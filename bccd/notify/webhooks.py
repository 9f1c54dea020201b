"""Webhooks (SPEC §9): signed POSTs to ``webhooks.url``, delivered from the durable outbox.

Events (``type``):

- ``message.stored`` — a new message was filed (Smart Bcc, IMAP, or released from
  quarantine); emitted by ``ingest.store._file`` through :func:`message_stored`.
- ``message.quarantined`` — a copy was kept in quarantine (``ingest.quarantine.keep``,
  :func:`message_quarantined`).
- ``thread.linked`` — a thread gained a link it did not have: a deal, lead or project
  however it was made (automatic, per-entity address, by hand, retroactively — the one
  place is ``linking.deals.set_item_link``, :func:`item_linking`), or a person or
  organization linked by hand (the API / Mail page action, :func:`linked`).

Each is enqueued with :func:`bccd.notify.outbox.add` in the *caller's* transaction,
so an event exists exactly when the change it describes was committed. Events are only
queued where a delivery target is configured: ``attach(db, settings)`` (called once by
``bccd serve``) records, for that database's engine, that ``webhooks.url`` is set;
processes that did not attach (one-shot CLI commands) queue nothing.

Delivery (:func:`deliver_job`, outbox kind ``webhook``) follows *Standard Webhooks*:
the body is ``{"type", "timestamp", "data"}`` (JSON, fixed at enqueue time); headers
``webhook-id`` (``msg_…``, the same on every retry, so receivers can deduplicate),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` under ``webhooks.secret`` (a
``whsec_<base64>`` secret is base64-decoded; any other string is used as raw bytes; no
secret → no signature header). A 2xx answer is success; anything else (or a network
error) is retried by the outbox with exponential back-off (2 s, 4 s, 8 s … at most
15 min, for up to 3 days), then ``failed``. Redirects are not followed. The job row is
the delivery record: ``deliveries(session, company_id)`` lists recent ones with their
state, attempts and last error (the admin API shows them).

Payloads carry ``user_id`` and ``company_id``, so offboarding and erasure
(``bccd.lifecycle.cascade``) find and remove a user's queued events.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bccd.log import get_logger
from bccd.notify import outbox
from bccd.store.models import Company, Link, OutboxJob, Thread, User, utcnow

if TYPE_CHECKING:
    from bccd.config import Settings
    from bccd.service import Services
    from bccd.store.db import Database
    from bccd.store.models import Message, Quarantined

log = get_logger("bccd.webhooks")

KIND = "webhook"
EVENT_TYPES = ("message.stored", "message.quarantined", "thread.linked")
TIMEOUT = 10.0
USER_AGENT = "bccd-webhooks/1"

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
    """``ingest.store._file``: a new message (call after its links are made). The owner's
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
        "from": msg.from_addr,
        "subject": msg.subject,
        "date": msg.date.isoformat() if msg.date else None,
        "links": _links(session, msg.thread_id),
    }, user_id=msg.user_id, company_id=msg.company_id)


def message_quarantined(session: Session, row: Quarantined, company_id: int) -> None:
    """``ingest.quarantine.keep``: a copy was kept for the user to review."""
    if not enabled(session):
        return
    emit(session, "message.quarantined", {
        "quarantine_id": row.id,
        "user": _user_email(session, row.user_id),
        "company": _company_slug(session, company_id),
        "from": row.from_addr,
        "subject": row.subject,
    }, user_id=row.user_id, company_id=company_id)


def linked(session: Session, thread: Thread, kind: str, entity_id: int, how: str) -> None:
    """A thread gained the link (kind, entity_id); the caller knows it is new."""
    emit(session, "thread.linked", {
        "thread_id": thread.id,
        "owner": _user_email(session, thread.owner_id),
        "company": _company_slug(session, thread.company_id),
        "link": {"kind": kind, "id": entity_id, "how": how},
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
        linked(session, thread, kind, item_id, how)


# ------------------------------------------------------------------ signing
def secret_key(secret: str) -> bytes:
    """The HMAC key: ``whsec_<base64>`` decoded (Standard Webhooks), else the raw bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def body_of(event: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed) — the same for every attempt."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def headers_for(secret: str, msg_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    ts = int(now if now is not None else time.time())
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               "webhook-id": msg_id, "webhook-timestamp": str(ts)}
    if secret:
        headers["webhook-signature"] = sign(secret, msg_id, ts, body)
    return headers


# ------------------------------------------------------------------ delivery
class DeliveryFailed(Exception):
    """The receiver did not answer 2xx (retried by the outbox)."""


async def deliver_job(services: Services, payload: dict[str, Any]) -> None:
    """The outbox handler for kind ``webhook``: one signed POST."""
    import httpx

    from bccd import metrics

    url = services.settings.webhooks.url
    if not url:
        raise outbox.PermanentFailure("webhooks.url is not configured")
    try:
        msg_id = str(payload["webhook_id"])
        event = dict(payload["event"])
    except (KeyError, TypeError, ValueError) as exc:
        raise outbox.PermanentFailure(f"malformed webhook job: {exc!r}") from None
    body = body_of(event)
    headers = headers_for(services.settings.webhooks.secret, msg_id, body)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            resp = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        metrics.webhook_delivered(False)
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= resp.status_code < 300:
        metrics.webhook_delivered(False)
        raise DeliveryFailed(f"receiver answered {resp.status_code}")
    metrics.webhook_delivered(True)
    log.info("webhook_delivered", webhook_id=msg_id, type=event.get("type"),
             status=resp.status_code)


@dataclass(frozen=True, slots=True)
class Delivery:
    job_id: int
    webhook_id: str
    type: str
    state: str
    attempts: int
    last_error: str
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    done_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "webhook_id": self.webhook_id, "type": self.type,
                "state": self.state, "attempts": self.attempts, "last_error": self.last_error,
                "created_at": self.created_at.isoformat(),
                "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
                "done_at": self.done_at.isoformat() if self.done_at else None}


SCAN = 2000


def deliveries(session: Session, company_id: int, *, state: str | None = None,
               limit: int = 50) -> list[Delivery]:
    """The company's most recent deliveries (newest first), optionally of one state.

    Payloads are JSON, so the company filter is applied here over the newest ``SCAN``
    webhook jobs (the outbox purges finished jobs after a week)."""
    q = select(OutboxJob).where(OutboxJob.kind == KIND)
    if state is not None:
        q = q.where(OutboxJob.state == state)
    out: list[Delivery] = []
    for job in session.scalars(q.order_by(OutboxJob.id.desc()).limit(SCAN)):
        payload = job.payload or {}
        if payload.get("company_id") != company_id:
            continue
        event = payload.get("event") or {}
        out.append(Delivery(
            job_id=job.id, webhook_id=str(payload.get("webhook_id", "")),
            type=str(event.get("type", "")), state=job.state, attempts=job.attempts,
            last_error=job.last_error, created_at=job.created_at,
            next_attempt_at=job.next_attempt_at if job.state == "pending" else None,
            done_at=job.done_at))
        if len(out) >= limit:
            break
    return out
