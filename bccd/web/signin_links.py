"""Emailed sign-in links (SPEC §9): single use, valid ``signin.link_ttl`` (15 minutes),
stored hashed (SHA-256), sent through ``outbound`` as bccd's own mail.

:func:`request_link` takes the address typed on ``/mail/login``: when it is an enabled
user's login address it stores a new link (:func:`new_link`) and queues the mail (at most
one per ``signin.resend_interval``); otherwise it does nothing. Either way the caller answers
the same. :func:`lookup` tells what a link is (pending, used, expired, unknown) without
changing it — the GET of the link only shows a button; :func:`use` spends it in one
conditional UPDATE and returns the user to sign in (``None`` when it cannot).
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bccd.addresses import hash_token
from bccd.config import Settings
from bccd.notify import mails, outbound
from bccd.store.grants import SigninLink
from bccd.store.models import User, utcnow

MAX_TOKEN = 100


class LinkState(enum.Enum):
    PENDING = "pending"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class LinkInfo:
    state: LinkState
    email: str = ""
    expires_at: dt.datetime | None = None


def link_url(settings: Settings, token: str) -> str:
    return f"{settings.http.base_url.rstrip('/')}/mail/login/link/{token}"


def request_link(session: Session, settings: Settings, email: str, *,
                 now: dt.datetime | None = None) -> bool:
    """True when a mail was queued (never shown to the person asking)."""
    now = now or utcnow()
    address = email.strip().lower()
    if not address or len(address) > 320:
        return False
    user = session.scalar(select(User).where(func.lower(User.email) == address))
    if user is None or user.disabled:
        return False
    recent = session.scalar(select(func.max(SigninLink.created_at)).where(SigninLink.user_id == user.id))
    if recent is not None and now - recent < dt.timedelta(seconds=settings.signin.resend_interval):
        return False
    url, expires = new_link(session, settings, user, now=now)
    outbound.enqueue_mail(session, mails.signin_link(
        settings, user_name=user.name, user_email=user.email, url=url, expires_at=expires))
    return True


def new_link(session: Session, settings: Settings, user: User, *,
             now: dt.datetime | None = None) -> tuple[str, dt.datetime]:
    """A new sign-in link for ``user`` (stored hashed, single use, valid
    ``signin.link_ttl``) → (its URL, when it expires). ``request_link`` mails it; the
    operator's ``bccd quickstart`` prints it."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    expires = now + dt.timedelta(seconds=settings.signin.link_ttl)
    session.add(SigninLink(user_id=user.id, token_hash=hash_token(token), created_at=now,
                           expires_at=expires))
    return link_url(settings, token), expires


def _row(session: Session, token: str) -> SigninLink | None:
    if not token or len(token) > MAX_TOKEN:
        return None
    return session.scalar(select(SigninLink).where(SigninLink.token_hash == hash_token(token)))


def lookup(session: Session, token: str, *, now: dt.datetime | None = None) -> LinkInfo:
    now = now or utcnow()
    row = _row(session, token)
    if row is None:
        return LinkInfo(LinkState.UNKNOWN)
    user = session.get(User, row.user_id)
    email = user.email if user else ""
    if row.used_at is not None:
        return LinkInfo(LinkState.USED, email)
    if row.expires_at <= now or user is None or user.disabled:
        return LinkInfo(LinkState.EXPIRED, email)
    return LinkInfo(LinkState.PENDING, email, row.expires_at)


def use(session: Session, token: str, *, now: dt.datetime | None = None) -> User | None:
    now = now or utcnow()
    if not token or len(token) > MAX_TOKEN:
        return None
    digest = hash_token(token)
    won = session.execute(update(SigninLink).where(
        SigninLink.token_hash == digest, SigninLink.used_at.is_(None), SigninLink.expires_at > now)
        .values(used_at=now))
    if getattr(won, "rowcount", 0) != 1:
        return None
    row = session.scalar(select(SigninLink).where(SigninLink.token_hash == digest))
    user = session.get(User, row.user_id) if row else None
    return None if user is None or user.disabled else user
