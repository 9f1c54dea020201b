"""Keeping a copy in quarantine, and telling the user (SPEC §4.4).

Contract:

- ``keep(db, settings, request)`` (blocking, one transaction) keeps the raw bytes,
  envelope and verdict of one copy for one user and returns ``Held`` (a retry of the
  same message is not kept twice: the same ``Held``), or raises ``HoldRefused`` when the
  user's quarantine already holds ``retention.quarantine_max_per_user`` copies or the
  address is another user's login. Ingest calls it only *after* authenticity passed — a
  copy that fails authenticity is never kept and never answered — and maps the result
  to the SMTP reply (``bccd.ingest.holding``).
- In the same transaction the address becomes a *pending* alternate of the user (if it
  is not one) and — at most once a day per (user, address), decided by a conditional
  UPDATE on ``notices`` — a notice mail to the user is queued in the outbox. The notice
  never confirms anything by itself: it sends the user to the Mail page settings, whose
  "Send confirmation link" emails the normal confirmation (SPEC §6) to the quarantined
  address, so only someone who reads that mailbox can confirm it. While a confirmation
  emailed to the address is still valid, the notice points to that email instead.
- Confirming the address queues a release job (``enqueue_release``; outbox kind
  ``quarantine_release``), which ingest performs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bccd.config import Settings
from bccd.log import get_logger
from bccd.notify import mails, outbound
from bccd.store import events, outbox
from bccd.store.db import Database
from bccd.store.models import Alternate, Notice, Quarantined, User, utcnow
from bccd.store.queries import insert_ignore

log = get_logger("bccd.quarantine")

RELEASE_KIND = "quarantine_release"
NOTICE_INTERVAL = dt.timedelta(days=1)
_NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SETTINGS_PATH = "/mail/settings"


def not_confirmed_reason(address: str) -> str:
    """The 550 5.7.1 text for a sender that is not the user's (never names the user)."""
    return (f"{address} is not a confirmed address of this Smart Bcc user; to file mail sent"
            " from it, add it as an alternate address (Mail page settings, or"
            f" `bccd alt add USER {address}`) and open the confirmation link emailed to it")


def full_reason(address: str) -> str:
    return (f"{address} is not a confirmed address of this Smart Bcc user and the user's"
            " quarantine is full; confirm the address (Mail page settings, or"
            f" `bccd alt add USER {address}`) to file mail sent from it")


@dataclass(frozen=True, slots=True)
class HoldRequest:
    user_id: int
    address: str
    raw: bytes
    dedup_key: str
    subject: str
    envelope: dict[str, Any]
    auth: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Held:
    """The copy is in quarantine (``id``); ``reason`` says why, for the log."""

    id: int | None
    reason: str


class HoldRefused(Exception):
    """Not kept: the quarantine is full, or the address is another user's login.
    ``reason`` is the one line for the sender (550 5.7.1)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def keep(db: Database, settings: Settings, req: HoldRequest, now: dt.datetime | None = None) -> Held:
    """Keep one copy (blocking, one transaction); see the module docstring."""
    now = now or utcnow()
    with db.transaction() as s:
        user = s.get(User, req.user_id)
        assert user is not None
        other = s.scalar(select(User.id).where(User.email == req.address))
        if other is not None and other != user.id:
            raise HoldRefused(not_confirmed_reason(req.address))
        existing = s.scalar(select(Quarantined.id).where(
            Quarantined.user_id == user.id, Quarantined.dedup_key == req.dedup_key))
        if existing is not None:
            return Held(existing, "already in quarantine")
        if held_count(s, user.id) >= settings.retention.quarantine_max_per_user:
            raise HoldRefused(full_reason(req.address))
        row = Quarantined(user_id=user.id, from_addr=req.address, dedup_key=req.dedup_key,
                          subject=req.subject[:2000], raw=req.raw, envelope=req.envelope,
                          auth=req.auth, created_at=now)
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:  # the same message, kept concurrently by another delivery
            dup = s.scalar(select(Quarantined.id).where(
                Quarantined.user_id == user.id, Quarantined.dedup_key == req.dedup_key))
            return Held(dup, "already in quarantine")
        alt = ensure_alternate(s, user.id, req.address)
        if alt.status == "confirmed":
            # confirmed while this copy was on its way: release it like the others
            enqueue_release(s, user.id, req.address)
        else:
            notify(s, settings, user, alt, now)
        events.message_quarantined(s, row, user.company_id)
        return Held(row.id, f"{req.address} is not confirmed: kept in quarantine")


def held_count(session: Session, user_id: int, address: str | None = None) -> int:
    """Copies held (not released) for the user, optionally only those from ``address``."""
    q = select(func.count(Quarantined.id)).where(
        Quarantined.user_id == user_id, Quarantined.released_at.is_(None))
    if address is not None:
        q = q.where(Quarantined.from_addr == address)
    return int(session.scalar(q) or 0)


def ensure_alternate(session: Session, user_id: int, address: str) -> Alternate:
    """The user's alternate row for ``address``, created pending when there is none."""
    q = select(Alternate).where(Alternate.user_id == user_id, Alternate.email == address)
    alt = session.scalar(q)
    if alt is None:
        insert_ignore(session, Alternate, [{"user_id": user_id, "email": address,
                                            "status": "pending"}])
        alt = session.scalar(q)
        assert alt is not None
    return alt


def notify(session: Session, settings: Settings, user: User, alt: Alternate, now: dt.datetime) -> bool:
    """Queue the quarantine notice for (user, address) unless one went out in the last day."""
    insert_ignore(session, Notice, [{"user_id": user.id, "address": alt.email,
                                     "last_sent_at": _NEVER}])
    res = session.execute(
        update(Notice)
        .where(Notice.user_id == user.id, Notice.address == alt.email,
               Notice.last_sent_at <= now - NOTICE_INTERVAL)
        .values(last_sent_at=now)
    )
    if getattr(res, "rowcount", 0) != 1:
        return False
    held = held_count(session, user.id, alt.email)
    emailed_valid = (alt.last_sent_at is not None and alt.token_hash is not None
                     and alt.token_expires_at is not None and alt.token_expires_at > now)
    mail = mails.notice(settings, user_name=user.name, user_email=user.email,
                        address=alt.email, held=held,
                        settings_url=settings.http.base_url.rstrip("/") + SETTINGS_PATH,
                        expires_at=alt.token_expires_at if emailed_valid else None,
                        emailed_at=alt.last_sent_at if emailed_valid else None)
    outbound.enqueue_mail(session, mail)
    log.info("quarantine_notice_queued", user=user.id, address=alt.email, held=held)
    return True


def enqueue_release(session: Session, user_id: int, address: str) -> None:
    outbox.enqueue(session, RELEASE_KIND, {"user_id": user_id, "address": address})
