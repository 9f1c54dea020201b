"""Signed-in sessions and CSRF for the Mail page.

A user signs in with their API token (the login form); the page then keeps a session
cookie ``bccd_session`` holding a random secret (256 bits). The server keeps each session
as a row of ``web_sessions``: the secret's SHA-256 (never the secret itself), the user,
the first characters of their API-token hash, and an expiry (``SESSION_TTL``). Every
request of the page looks the row up by that hash (a unique index) in the same read that
loads the user. A session ends when it expires, when the user signs out (the row is
deleted: the cookie is then worthless on every instance sharing the database, at once),
when the user is disabled or deleted, or when their API token changes.

Why a row per session rather than a counter per user that sign-out increments: signing
out of one browser must not sign the user out of the others, and a row names exactly
one session; the lookup costs one indexed read per page, and the page reads the database
anyway. Expired rows are deleted whenever someone signs in.

The cookie is ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and ``Secure`` when
``http.public_url`` is https.

CSRF: every state-changing form carries ``csrf`` = HMAC(key, "csrf" + the session's hash),
the key derived from ``security.secret_key`` — bound to the session, so it cannot be
guessed or replayed across sessions, and it dies with the session. The login form (no
session yet) uses a double-submit cookie ``bccd_login`` (random, HttpOnly,
SameSite=Strict) equal to its hidden field. Independently, a POST whose ``Origin`` header
names another origin is refused.

``inline_mac`` signs the address of an inline image of a shown message for one session
(``web.pages``): a sandboxed message frame sends no cookie, so the address itself carries
the session's row id and a MAC, and stops working when the session ends.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bccd.config import Settings
from bccd.store.grants import WebSession
from bccd.store.models import User, utcnow

COOKIE = "bccd_session"
LOGIN_COOKIE = "bccd_login"
SESSION_TTL = 12 * 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class SessionData:
    """What a request's cookie names: the hash of its secret (the row's key)."""

    token_hash: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"bccd web session v2", hashlib.sha256).digest()


def token_tag(api_token_hash: str) -> str:
    return api_token_hash[:16]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.keys = [_key(k) for k in settings.secret_keys if k]
        if not self.keys:
            raise ValueError("security.secret_key is not set")
        self.secure = settings.http.base_url.lower().startswith("https://")

    def issue(self, s: Session, user: User, *, now: dt.datetime | None = None) -> str:
        """A new session for ``user`` (in the caller's transaction) → the cookie value."""
        now = now or utcnow()
        s.execute(delete(WebSession).where(WebSession.expires_at <= now))
        token = secrets.token_urlsafe(32)
        s.add(WebSession(token_hash=_hash(token), user_id=user.id,
                         token_tag=token_tag(user.api_token_hash), created_at=now,
                         expires_at=now + dt.timedelta(seconds=SESSION_TTL)))
        s.flush()
        return token

    def read(self, cookie: str | None) -> SessionData | None:
        """The session a cookie names, if it has the shape of one (not yet looked up)."""
        if not cookie or not _TOKEN.match(cookie):
            return None
        return SessionData(_hash(cookie))

    def user(self, s: Session, data: SessionData | None) -> tuple[WebSession, User] | None:
        """The live session and its user, or None (unknown, signed out, expired, the user
        disabled or their API token replaced)."""
        if data is None:
            return None
        row = s.execute(select(WebSession, User).join(User, User.id == WebSession.user_id)
                        .where(WebSession.token_hash == data.token_hash)).first()
        if row is None:
            return None
        ws, user = row.tuple()
        if ws.expires_at <= utcnow() or user.disabled \
                or token_tag(user.api_token_hash) != ws.token_tag:
            return None
        return ws, user

    def by_id(self, s: Session, session_id: int) -> tuple[WebSession, User] | None:
        ws = s.get(WebSession, session_id)
        return self.user(s, SessionData(ws.token_hash)) if ws is not None else None

    def end(self, s: Session, data: SessionData) -> None:
        """Sign out: the session is gone for every instance once this commits."""
        s.execute(delete(WebSession).where(WebSession.token_hash == data.token_hash))

    def csrf(self, session: SessionData) -> str:
        return _b64(hmac.new(self.keys[0], b"csrf" + session.token_hash.encode(),
                             hashlib.sha256).digest())

    def csrf_ok(self, session: SessionData, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.csrf(session), value or "")

    def inline_mac(self, session_id: int, attachment_id: int) -> str:
        msg = f"inline:{session_id}:{attachment_id}".encode()
        return _b64(hmac.new(self.keys[0], msg, hashlib.sha256).digest())[:32]

    def inline_ok(self, session_id: int, attachment_id: int, mac: str) -> bool:
        return hmac.compare_digest(self.inline_mac(session_id, attachment_id), mac)

    def cookie_kwargs(self, *, max_age: int | None = SESSION_TTL) -> dict[str, object]:
        return {"max_age": max_age, "path": "/", "httponly": True, "samesite": "lax",
                "secure": self.secure}


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)
