"""Models of access granted or in flight (SPEC §7, §9): Mail page sessions, OAuth 2.0 /
OpenID Connect ``state`` records and emailed sign-in links. Part of ``bccd.store.models`` (which
re-exports them, so ``Base.metadata`` always holds them); a module of its own to keep each
file to one responsibility."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bccd.store.models import Base, _fk, _pk, utcnow


class WebSession(Base):
    """A signed-in session of the Mail page (``bccd.web.session``): the cookie's secret is
    kept only as its SHA-256; signing out deletes the row."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = _pk()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = _fk("users.id")
    token_tag: Mapped[str] = mapped_column(String(16))  # the API token it was opened with
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class OAuthState(Base):
    """One OAuth 2.0 / OpenID Connect authorization request in flight (SPEC §7, §9): the
    ``state`` (stored hashed), what it is for, and its PKCE verifier and nonce (encrypted).
    Single use: ``used_at`` is set by the callback that consumes it."""

    __tablename__ = "oauth_states"
    __table_args__ = (CheckConstraint("purpose IN ('mailbox', 'signin')", name="purpose"),)
    id: Mapped[int] = _pk()
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = _fk("users.id", nullable=True)
    account_id: Mapped[int | None] = _fk("imap_accounts.id", nullable=True)
    secret_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class SigninLink(Base):
    """An emailed sign-in link (SPEC §9): single use, short-lived, stored hashed."""

    __tablename__ = "signin_links"
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
