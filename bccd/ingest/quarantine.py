"""Quarantine (SPEC §4.4): copies from an address that is not (yet) a confirmed alternate
but that passed authenticity are kept for the user instead of refused.

Contract:

- ``hold(db, settings, request)`` (async; the blocking part ``keep`` runs in the database
  threads, shielded from a client that hangs up) keeps the raw bytes, envelope and verdict
  of one copy for one user in one transaction and returns an ``Outcome``:
  ``QUARANTINED`` (250 to the client; a retry of the same message is not kept twice), or
  ``REFUSED`` 550 5.7.1 when the user's quarantine already holds
  ``retention.quarantine_max_per_user`` copies or the address is another user's login.
  The pipeline calls it only *after* authenticity passed — a copy that fails authenticity
  is never kept and never answered.
- In the same transaction the address becomes a *pending* alternate of the user (if it
  is not one) and — at most once a day per (user, address), decided by a conditional
  UPDATE on ``notices`` — a notice mail to the user is queued in the outbox, with a
  confirmation link (or, while a confirmation emailed to the address is still valid, a
  pointer to that email, so its link keeps working).
- Confirming the address queues a release job (``enqueue_release``; outbox kind
  ``quarantine_release``). ``release_address`` files every held copy from that address
  through the normal filing path (``Pipeline.release``, source ``bcc``) — only while the
  address is still confirmed — and marks it released *after* filing, with a conditional
  UPDATE. Filing is idempotent (dedup per user), so a crash or a second releaser can only
  ever produce one message: exactly once. ``release_one`` is the operator's override
  (``bccd quarantine release ID``) and does not need the address to be confirmed.
- ``purge_expired`` deletes copies older than ``retention.quarantine`` (released or not);
  the maintenance worker in ``bccd.notify.worker`` calls it periodically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bccd.auth.sender import Mailbox
from bccd.auth.verdict import AuthVerdict
from bccd.config import Settings
from bccd.confirm import mails, tokens
from bccd.ingest.outcome import Disposition, Outcome, SenderRefused, classify
from bccd.ingest.parse import Parsed
from bccd.ingest.types import Envelope
from bccd.log import get_logger
from bccd.notify import outbound, outbox, webhooks
from bccd.smtp import replies as R
from bccd.store.db import Database
from bccd.store.models import Alternate, Notice, Quarantined, User, utcnow
from bccd.store.queries import delete_older_than, insert_ignore

if TYPE_CHECKING:
    from bccd.ingest.pipeline import Pipeline
    from bccd.service import Services

log = get_logger("bccd.quarantine")

RELEASE_KIND = "quarantine_release"
NOTICE_INTERVAL = dt.timedelta(days=1)
_NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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


def hold_request(
    *, user_id: int, rcpt: str, raw: bytes, parsed: Parsed, mailbox: Mailbox,
    verdict: AuthVerdict, envelope: Envelope,
) -> HoldRequest:
    return HoldRequest(
        user_id=user_id, address=mailbox.email, raw=raw, dedup_key=parsed.dedup_key[:998],
        subject=parsed.subject or "",
        envelope={"rcpt": rcpt, "mail_from": envelope.mail_from, "client_ip": envelope.client_ip,
                  "helo": envelope.helo, "tls": envelope.tls},
        auth=verdict.as_dict(),
    )


# ------------------------------------------------------------------ keeping a copy
async def hold(db: Database, settings: Settings, req: HoldRequest) -> Outcome:
    task = asyncio.ensure_future(db.run(keep, db, settings, req))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
    except Exception as exc:  # the taxonomy decides
        err = classify(exc)
        log.warning("quarantine_failed", user=req.user_id, error=err.reason, detail=err.detail)
        return Outcome.from_error(err)


def keep(db: Database, settings: Settings, req: HoldRequest, now: dt.datetime | None = None) -> Outcome:
    """Keep one copy (blocking, one transaction); see the module docstring."""
    now = now or utcnow()
    with db.transaction() as s:
        user = s.get(User, req.user_id)
        assert user is not None
        other = s.scalar(select(User.id).where(User.email == req.address))
        if other is not None and other != user.id:
            return Outcome.from_error(SenderRefused(not_confirmed_reason(req.address)))
        existing = s.scalar(select(Quarantined.id).where(
            Quarantined.user_id == user.id, Quarantined.dedup_key == req.dedup_key))
        if existing is not None:
            return _held(existing, "already in quarantine")
        if held_count(s, user.id) >= settings.retention.quarantine_max_per_user:
            return Outcome.from_error(SenderRefused(full_reason(req.address)))
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
            return _held(dup, "already in quarantine")
        alt = ensure_alternate(s, user.id, req.address)
        if alt.status == "confirmed":
            # confirmed while this copy was on its way: release it like the others
            enqueue_release(s, user.id, req.address)
        else:
            notify(s, settings, user, alt, now)
        webhooks.message_quarantined(s, row, user.company_id)
        return _held(row.id, f"{req.address} is not confirmed: kept in quarantine")


def _held(qid: int | None, reason: str) -> Outcome:
    return Outcome(Disposition.QUARANTINED, R.STORED, reason=reason,
                   extra={"quarantine_id": qid})


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
    url: str | None = None
    emailed_valid = (alt.last_sent_at is not None and alt.token_hash is not None
                     and alt.token_expires_at is not None and alt.token_expires_at > now)
    if not emailed_valid:
        # no link of the address's own confirmation mail to keep alive: a fresh one
        url = tokens.confirm_url(settings.http.base_url,
                                 tokens.issue(alt, settings.confirm.ttl, now))
        session.flush()
    mail = mails.notice(settings, user_name=user.name, user_email=user.email,
                        address=alt.email, held=held, url=url,
                        expires_at=alt.token_expires_at,
                        emailed_at=alt.last_sent_at if emailed_valid else None)
    outbound.enqueue_mail(session, mail)
    log.info("quarantine_notice_queued", user=user.id, address=alt.email, held=held)
    return True


# ------------------------------------------------------------------ releasing
def enqueue_release(session: Session, user_id: int, address: str) -> None:
    outbox.enqueue(session, RELEASE_KIND, {"user_id": user_id, "address": address})


@dataclass(frozen=True, slots=True)
class _Held:
    id: int
    user_id: int
    raw: bytes
    auth: dict[str, Any]
    released: bool


def _load(db: Database, qid: int) -> _Held | None:
    with db.read() as s:
        row = s.get(Quarantined, qid)
        if row is None:
            return None
        return _Held(row.id, row.user_id, row.raw, dict(row.auth), row.released_at is not None)


def _mark_released(db: Database, qid: int, now: dt.datetime) -> bool:
    with db.transaction() as s:
        res = s.execute(update(Quarantined)
                        .where(Quarantined.id == qid, Quarantined.released_at.is_(None))
                        .values(released_at=now))
        return getattr(res, "rowcount", 0) == 1


def verdict_from(data: dict[str, Any], **extra: Any) -> AuthVerdict:
    names = {f.name for f in dataclasses.fields(AuthVerdict)}
    kw = {k: v for k, v in data.items() if k in names}
    kw["dkim_domains"] = tuple(kw.get("dkim_domains") or ())
    kw["extra"] = {**dict(kw.get("extra") or {}), **extra}
    return AuthVerdict(**kw)


async def release_one(pipeline: Pipeline, qid: int) -> Outcome | None:
    """File one held copy (operator override: the address need not be confirmed).

    None when there is no such copy; a ``DUPLICATE`` outcome when it was released already.
    """
    db = pipeline.db
    held = await db.run(_load, db, qid)
    if held is None:
        return None
    if held.released:
        return Outcome(Disposition.DUPLICATE, R.STORED, reason="already released")
    now = utcnow()
    auth = verdict_from(held.auth, quarantine={"id": held.id, "released_at": now.isoformat()})
    out = await pipeline.release(held.raw, user_id=held.user_id, auth=auth)
    if out.disposition in (Disposition.STORED, Disposition.DUPLICATE, Disposition.DROPPED):
        await db.run(_mark_released, db, qid, now)
    log.info("quarantine_released", quarantine_id=qid, user=held.user_id,
             outcome=out.disposition.value, reason=out.reason, message=out.message_id)
    return out


@dataclass(slots=True)
class ReleaseSummary:
    filed: int = 0
    temporary: int = 0
    refused: int = 0
    reason: str = ""


def _releasable(db: Database, user_id: int, address: str) -> list[int]:
    with db.read() as s:
        confirmed = s.scalar(select(Alternate.id).where(
            Alternate.user_id == user_id, Alternate.email == address,
            Alternate.status == "confirmed"))
        if confirmed is None:
            return []
        return list(s.scalars(
            select(Quarantined.id)
            .where(Quarantined.user_id == user_id, Quarantined.from_addr == address,
                   Quarantined.released_at.is_(None))
            .order_by(Quarantined.id)))


async def release_address(pipeline: Pipeline, user_id: int, address: str) -> ReleaseSummary:
    """File every held copy from ``address`` while it is a confirmed alternate of the user."""
    summary = ReleaseSummary()
    for qid in await pipeline.db.run(_releasable, pipeline.db, user_id, address):
        out = await release_one(pipeline, qid)
        if out is None:
            continue
        if out.disposition is Disposition.TEMPFAIL:
            summary.temporary += 1
            summary.reason = out.reason
        elif out.disposition is Disposition.REFUSED:
            summary.refused += 1
        else:
            summary.filed += 1
    return summary


async def release_job(services: Services, payload: dict[str, Any]) -> None:
    """The outbox handler for kind ``quarantine_release``."""
    try:
        user_id, address = int(payload["user_id"]), str(payload["address"])
    except (KeyError, TypeError, ValueError) as exc:
        raise outbox.PermanentFailure(f"malformed release job: {exc!r}") from None
    summary = await release_address(services.pipeline, user_id, address)
    if summary.temporary:
        raise RuntimeError(f"{summary.temporary} held copies not filed yet: {summary.reason}")


# ------------------------------------------------------------------ listing, purging
@dataclass(frozen=True, slots=True)
class HeldCopy:
    id: int
    user_id: int
    from_addr: str
    subject: str
    size: int
    received_at: dt.datetime
    released_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "from": self.from_addr, "subject": self.subject, "size": self.size,
                "received_at": self.received_at.isoformat(),
                "status": "released" if self.released_at else "held",
                "released_at": self.released_at.isoformat() if self.released_at else None}


def list_copies(session: Session, user_id: int) -> list[HeldCopy]:
    rows = session.execute(
        select(Quarantined.id, Quarantined.user_id, Quarantined.from_addr, Quarantined.subject,
               func.length(Quarantined.raw), Quarantined.created_at, Quarantined.released_at)
        .where(Quarantined.user_id == user_id)
        .order_by(Quarantined.id)
    ).all()
    return [HeldCopy(r[0], r[1], r[2], r[3], int(r[4] or 0), r[5], r[6]) for r in rows]


def purge_expired(db: Database, retention_seconds: int, *, now: dt.datetime | None = None,
                  batch: int = 500, stop: threading.Event | None = None) -> int:
    """Delete copies received more than ``retention_seconds`` ago; returns how many
    (``stop``: end between batches)."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=retention_seconds)
    return delete_older_than(db, Quarantined, Quarantined.created_at, cutoff, batch=batch,
                             stop=stop)
