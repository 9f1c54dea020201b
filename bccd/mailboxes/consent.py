"""OAuth 2.0 / OpenID Connect authorization requests in flight (SPEC §7, §9).

:func:`begin` makes a request: a random ``state`` (stored only as its SHA-256), a PKCE
``code_verifier`` (RFC 7636) and an OpenID ``nonce``, both encrypted at rest under
``security.secret_key``; it returns them for the authorization URL. It is valid for
``TTL`` (10 minutes) and names what it is for: connecting a mailbox for a user (or
signing in again to one), or signing in to the Mail page.

:func:`consume` takes the ``state`` the callback received and uses it up in one
conditional UPDATE (so two callbacks racing with the same state cannot both win). An
unknown, already-used or expired state raises :class:`BadState` (400) and changes
nothing else. Old requests are deleted as new ones are made.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bccd.addresses import hash_token
from bccd.crypto import SecretBox
from bccd.errors import BccdError
from bccd.store.grants import OAuthState
from bccd.store.models import utcnow

TTL = dt.timedelta(minutes=10)
KEEP = dt.timedelta(days=1)  # used and expired requests are kept this long, then deleted


class BadState(BccdError):
    """The callback's ``state`` is unknown, already used or expired."""

    status = 400


@dataclass(frozen=True, slots=True)
class Request:
    state: str
    code_verifier: str = field(repr=False)
    nonce: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Consent:
    purpose: str
    provider: str
    user_id: int | None
    account_id: int | None
    code_verifier: str = field(repr=False)
    nonce: str = field(repr=False)


def begin(session: Session, box: SecretBox, *, purpose: str, provider: str,
          user_id: int | None = None, account_id: int | None = None,
          now: dt.datetime | None = None) -> Request:
    now = now or utcnow()
    session.execute(delete(OAuthState).where(OAuthState.expires_at < now - KEEP))
    req = Request(secrets.token_urlsafe(32), secrets.token_urlsafe(48), secrets.token_urlsafe(16))
    session.add(OAuthState(
        state_hash=hash_token(req.state), purpose=purpose, provider=provider, user_id=user_id,
        account_id=account_id, expires_at=now + TTL,
        secret_enc=box.encrypt_json({"v": req.code_verifier, "n": req.nonce})))
    session.flush()
    return req


def consume(session: Session, box: SecretBox, state: str, *, now: dt.datetime | None = None) -> Consent:
    now = now or utcnow()
    if not state or len(state) > 200:
        raise BadState("the sign-in answer carries no valid state: start again")
    digest = hash_token(state)
    won = session.execute(
        update(OAuthState)
        .where(OAuthState.state_hash == digest, OAuthState.used_at.is_(None),
               OAuthState.expires_at > now)
        .values(used_at=now))
    row = session.scalar(select(OAuthState).where(OAuthState.state_hash == digest))
    if getattr(won, "rowcount", 0) != 1 or row is None:
        if row is None:
            raise BadState("this sign-in answer is not one bccd asked for (unknown state): start again")
        if row.used_at is not None and row.used_at != now:
            raise BadState("this sign-in answer was already used: start again")
        raise BadState("this sign-in took too long and expired: start again")
    secret = box.decrypt_json(row.secret_enc)
    return Consent(row.purpose, row.provider, row.user_id, row.account_id,
                   str(secret.get("v", "")), str(secret.get("n", "")))
