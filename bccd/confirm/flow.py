"""Adding, confirming and removing alternate addresses (SPEC §6).

Blocking functions on an open session (``Database.transaction()``); the CLI and the web
page call them, the web page through ``Database.run``. People-facing errors are
``bccd.errors`` types.

- ``add(session, settings, user, address)`` creates a *pending* alternate and queues the
  confirmation mail to that address in the same transaction (the outbox delivers it; a
  relay that is briefly away never makes adding fail). For an address that is already
  pending it is a resend: a new token, the older link stops working.
- Sending is limited per user (``_send``), never across users: one confirmation mail per
  (user, address) per ``confirm.resend_interval``, and at most ``confirm.daily_cap``
  confirmation mails per user in any 24 hours, whatever the addresses. Both count the
  ``confirmation_sends`` log, not the alternate row, so removing an address and adding it
  again resets neither. ``TooSoon`` (429) says when to try again. What another user did
  with the same address — in this company or another — never delays or changes an answer.
- ``lookup(session, token)`` → ``TokenInfo`` (``pending``, ``used``, ``expired``,
  ``unknown``) — never changes anything (a GET of the link is not a confirmation).
- ``confirm(session, token)`` confirms with one conditional UPDATE
  (``WHERE token_hash = … AND status = 'pending' AND token_expires_at > now``): of two
  concurrent confirmations exactly one gets ``confirmed``, the other ``used``. Held
  quarantined copies from the address are queued for release in the same transaction.
- ``remove(session, user, address)`` deletes the alternate (pending or confirmed); copies
  from it are not accepted afterwards.

Decision (SPEC §6 "no answer reveals anything about users of another company"): adding
an address that is the login of a user of *another* company is answered exactly as adding
any other address — a pending alternate, ``confirmation: queued``, the same limits — but
no mail is sent to it (its owner did not ask to join another company's Smart Bcc, and the
pending alternate can never be confirmed). Within the user's own company a colleague's
login is refused by name (409 "… is the login address of another user of your
company"): colleagues' addresses are no secret inside a company, and the user learns
their mistake. The user's own login is refused likewise (400).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bccd.accounts import parse_email_arg
from bccd.addresses import domain_of
from bccd.config import Settings
from bccd.confirm import tokens
from bccd.errors import BccdError, Conflict, Invalid, NotFound
from bccd.notify import mails, outbound
from bccd.quarantine import hold
from bccd.store.models import Alternate, Company, ConfirmationSend, User, utcnow


class TooSoon(BccdError):
    """A confirmation was emailed to this address too recently."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenState(StrEnum):
    PENDING = "pending"        # valid, not used: the page offers the Confirm button
    CONFIRMED = "confirmed"    # confirmed by this very call
    USED = "used"              # the address was confirmed with this token already
    EXPIRED = "expired"
    UNKNOWN = "unknown"        # mistyped, replaced by a newer token, or the address removed


@dataclass(frozen=True, slots=True)
class TokenInfo:
    state: TokenState
    address: str = ""
    user_name: str = ""
    user_email: str = ""
    company: str = ""
    expires_at: dt.datetime | None = None
    held: int = 0              # quarantined copies from the address (to be released)

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "email": self.address, "user": self.user_email,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "quarantined": self.held}


@dataclass(frozen=True, slots=True)
class Sent:
    address: str
    status: str
    expires_at: dt.datetime
    resent: bool


def _alternate(session: Session, user: User, address: str) -> Alternate | None:
    return session.scalar(select(Alternate).where(Alternate.user_id == user.id,
                                                  Alternate.email == address))


def _check_address(session: Session, settings: Settings, user: User, address: str) -> bool:
    """Raise for an address ``user`` may not add; → whether a confirmation is mailed to it
    (not to another company's user's login: see the module docstring)."""
    if address == user.email:
        raise Invalid(f"{address} is the login address of {user.email} already")
    dom, bcc = domain_of(address), settings.smtp.bcc_domain
    if dom == bcc or dom.endswith("." + bcc):
        raise Invalid(f"{address} is a Smart Bcc address, not an address anyone sends from")
    company_id = session.scalar(select(User.company_id).where(User.email == address))
    if company_id is None:
        return True
    if company_id == user.company_id:
        raise Conflict(f"{address} is the login address of another user of your company")
    return False  # answered like any address, never mailed


def add(session: Session, settings: Settings, user: User, address: str,
        *, now: dt.datetime | None = None) -> Sent:
    """Add ``address`` as a pending alternate of ``user`` and email it a confirmation link."""
    now = now or utcnow()
    addr = parse_email_arg(address, "alternate address")
    mail = _check_address(session, settings, user, addr)
    alt = _alternate(session, user, addr)
    resent = alt is not None
    if alt is None:
        alt = Alternate(user_id=user.id, email=addr, status="pending", created_at=now)
        try:
            with session.begin_nested():
                session.add(alt)
                session.flush()
        except IntegrityError:  # added concurrently: treat as a resend
            alt = _alternate(session, user, addr)
            assert alt is not None
            resent = True
    if alt.status == "confirmed":
        raise Conflict(f"{addr} is already a confirmed address of {user.email}")
    _send(session, settings, user, alt, now, mail=mail)
    assert alt.token_expires_at is not None
    return Sent(addr, alt.status, alt.token_expires_at, resent)


def resend(session: Session, settings: Settings, user: User, address: str,
           *, now: dt.datetime | None = None) -> Sent:
    """Email a new confirmation link to a pending alternate (rate-limited)."""
    now = now or utcnow()
    addr = parse_email_arg(address, "alternate address")
    alt = _alternate(session, user, addr)
    if alt is None:
        raise NotFound(f"{addr} is not an alternate address of {user.email}")
    if alt.status == "confirmed":
        raise Conflict(f"{addr} is already a confirmed address of {user.email}")
    mail = _check_address(session, settings, user, addr)
    _send(session, settings, user, alt, now, mail=mail)
    assert alt.token_expires_at is not None
    return Sent(addr, alt.status, alt.token_expires_at, True)


DAY = dt.timedelta(days=1)


def _send(session: Session, settings: Settings, user: User, alt: Alternate, now: dt.datetime,
          *, mail: bool = True) -> None:
    """A new token for ``alt`` and, with ``mail``, its confirmation mail — within the
    user's limits (per address, per day), or ``TooSoon``."""
    interval = dt.timedelta(seconds=settings.confirm.resend_interval)
    window = max(DAY, interval)
    # one user's sends are decided one after another: the user's row is locked
    # (PostgreSQL; on SQLite the writer holds the database since BEGIN IMMEDIATE)
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    session.execute(delete(ConfirmationSend).where(ConfirmationSend.user_id == user.id,
                                                   ConfirmationSend.sent_at <= now - window))
    sends = session.execute(select(ConfirmationSend.email, ConfirmationSend.sent_at)
                            .where(ConfirmationSend.user_id == user.id)).all()
    here = [at for email, at in sends if email == alt.email]
    if here and now - max(here) < interval:
        wait = max(1, int((max(here) + interval - now).total_seconds()) + 1)
        raise TooSoon(f"a confirmation was emailed to {alt.email} less than"
                      f" {mails.human_duration(settings.confirm.resend_interval)} ago;"
                      f" try again in {wait} s", wait)
    today = sorted(at for _, at in sends if at > now - DAY)
    cap = settings.confirm.daily_cap
    if len(today) >= cap:
        wait = max(1, int((today[len(today) - cap] + DAY - now).total_seconds()) + 1)
        raise TooSoon(f"{cap} confirmation mails were sent for you in the last 24 hours,"
                      f" the most allowed a day; try again in {wait} s", wait)
    token = tokens.new_token()
    expires = now + dt.timedelta(seconds=settings.confirm.ttl)
    res = session.execute(
        update(Alternate)
        .where(Alternate.id == alt.id, Alternate.status == "pending")
        .values(token_hash=tokens.token_hash(token), token_expires_at=expires, last_sent_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(res, "rowcount", 0) != 1:
        raise Conflict(f"{alt.email} was confirmed meanwhile")
    session.add(ConfirmationSend(user_id=user.id, email=alt.email, sent_at=now))
    session.refresh(alt)
    if not mail:
        return
    company = session.get(Company, user.company_id)
    message = mails.confirmation(
        settings, user_name=user.name, user_email=user.email,
        company=company.name if company else "", address=alt.email,
        url=tokens.confirm_url(settings.http.base_url, token), expires_at=expires,
    )
    outbound.enqueue_mail(session, message)


def _info(session: Session, alt: Alternate, state: TokenState) -> TokenInfo:
    user = session.get(User, alt.user_id)
    assert user is not None
    company = session.get(Company, user.company_id)
    return TokenInfo(state, address=alt.email, user_name=user.name or user.email,
                     user_email=user.email, company=company.name if company else "",
                     expires_at=alt.token_expires_at,
                     held=hold.held_count(session, user.id, alt.email))


def _find(session: Session, token: str) -> Alternate | None:
    if not tokens.well_formed(token):
        return None
    digest = tokens.token_hash(token)
    alt = session.scalar(select(Alternate).where(Alternate.token_hash == digest))
    if alt is None or not tokens.same_hash(alt.token_hash, digest):
        return None
    return alt


def lookup(session: Session, token: str, *, now: dt.datetime | None = None) -> TokenInfo:
    """What the link ``token`` stands for now; changes nothing."""
    now = now or utcnow()
    alt = _find(session, token)
    if alt is None:
        return TokenInfo(TokenState.UNKNOWN)
    if alt.status == "confirmed":
        return _info(session, alt, TokenState.USED)
    if alt.token_expires_at is None or alt.token_expires_at <= now:
        return _info(session, alt, TokenState.EXPIRED)
    return _info(session, alt, TokenState.PENDING)


def confirm(session: Session, token: str, *, now: dt.datetime | None = None) -> TokenInfo:
    """Confirm the alternate ``token`` was issued for; race-safe and single use."""
    now = now or utcnow()
    if not tokens.well_formed(token):
        return TokenInfo(TokenState.UNKNOWN)
    digest = tokens.token_hash(token)
    res = session.execute(
        update(Alternate)
        .where(Alternate.token_hash == digest, Alternate.status == "pending",
               Alternate.token_expires_at > now)
        .values(status="confirmed", confirmed_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(res, "rowcount", 0) != 1:
        return lookup(session, token, now=now)
    alt = _find(session, token)
    assert alt is not None
    session.refresh(alt)
    info = _info(session, alt, TokenState.CONFIRMED)
    if info.held:
        hold.enqueue_release(session, alt.user_id, alt.email)
    return info


def remove(session: Session, user: User, address: str) -> None:
    addr = parse_email_arg(address, "alternate address")
    res = session.execute(delete(Alternate).where(Alternate.user_id == user.id,
                                                  Alternate.email == addr))
    if getattr(res, "rowcount", 0) != 1:
        raise NotFound(f"{addr} is not an alternate address of {user.email}")


def list_for(session: Session, user: User) -> list[dict[str, Any]]:
    rows = session.scalars(select(Alternate).where(Alternate.user_id == user.id)
                           .order_by(Alternate.id))
    return [{"email": a.email, "status": a.status,
             "added_at": a.created_at.isoformat(),
             "confirmed_at": a.confirmed_at.isoformat() if a.confirmed_at else None,
             "last_sent_at": a.last_sent_at.isoformat() if a.last_sent_at else None,
             "expires_at": (a.token_expires_at.isoformat()
                            if a.status == "pending" and a.token_expires_at else None),
             "quarantined": hold.held_count(session, user.id, a.email)}
            for a in rows]
