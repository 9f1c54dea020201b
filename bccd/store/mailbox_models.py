"""Models of users' mailboxes (SPEC §7): an account with its server and submission
settings, encrypted credentials, sync state and lease; the folder states of its sync; where
each synced message lives on the server. Part of ``bccd.store.models`` (which re-exports
them, so ``Base.metadata`` always holds them); a module of its own to keep each file to one
responsibility."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bccd.store.models import Base, _fk, _pk, utcnow


class ImapAccount(Base):
    __tablename__ = "imap_accounts"
    __table_args__ = (
        CheckConstraint("security IN ('ssl', 'starttls')", name="security"),
        CheckConstraint("on_archive IN ('none', 'archive', 'delete')", name="on_archive"),
        CheckConstraint("state IN ('active', 'paused', 'disabled')", name="state"),
        CheckConstraint("scope IN ('all', 'known')", name="scope"),
        CheckConstraint("smtp_security IS NULL OR smtp_security IN ('ssl', 'starttls')",
                        name="smtp_security"),
    )
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id")
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16), default="ssl")
    username: Mapped[str] = mapped_column(String(320))
    auth_kind: Mapped[str] = mapped_column(String(16), default="password")
    secret_enc: Mapped[str] = mapped_column(Text)  # Fernet token under security.secret_key
    ca_file: Mapped[str | None] = mapped_column(Text)
    folders: Mapped[list[Any]] = mapped_column(default=list)  # [] → all mail
    scope: Mapped[str] = mapped_column(String(8), default="all", server_default="all")
    on_archive: Mapped[str] = mapped_column(String(16), default="none")
    # submission (SPEC §7, §12): sending as the user through this mailbox; no host → cannot send
    smtp_host: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer)
    smtp_security: Mapped[str | None] = mapped_column(String(16))
    # the provider's own authserv-ids, whose Authentication-Results are believed (SPEC §7)
    authserv_ids: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    state: Mapped[str] = mapped_column(String(16), default="active")
    state_reason: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    last_sync_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # the ``bccd serve`` instance syncing it now, until when (``mailboxes.accounts.claim_lease``)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[dt.datetime | None]
    # connected by the user (SPEC §7): the preset it came from (``mailboxes.presets``), the
    # ``[oauth.<name>]`` provider that consented, and whether the user must sign in again
    provider: Mapped[str | None] = mapped_column(String(64))
    oauth_provider: Mapped[str | None] = mapped_column(String(64))
    needs_signin: Mapped[bool] = mapped_column(Boolean, default=False)
    # status a person can read: messages stored, the running pass's progress, first full sync
    messages_synced: Mapped[int] = mapped_column(BigInteger, default=0)
    sync_done: Mapped[int] = mapped_column(Integer, default=0)
    sync_total: Mapped[int] = mapped_column(Integer, default=0)
    initial_synced_at: Mapped[dt.datetime | None]


class ImapFolderState(Base):
    __tablename__ = "imap_folders"
    __table_args__ = (UniqueConstraint("account_id", "folder"),)
    id: Mapped[int] = _pk()
    account_id: Mapped[int] = _fk("imap_accounts.id", index=False)
    folder: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)


class ImapMessageRef(Base):
    """Where a stored message lives on an IMAP server (for write-back)."""

    __tablename__ = "imap_message_refs"
    __table_args__ = (UniqueConstraint("account_id", "folder", "uidvalidity", "uid"),)
    id: Mapped[int] = _pk()
    message_id: Mapped[int] = _fk("messages.id")
    account_id: Mapped[int] = _fk("imap_accounts.id", index=False)
    folder: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)


class ImapScopeSkip(Base):
    """A synced message left out by the account's ``scope = known`` (SPEC §7): no
    counterpart was a person of the company when it was examined. ``examined_mark`` is the
    company's newest person address (``person_emails.id``) at that time: when a newer one
    exists, the next pass examines the message again (``bccd.imap.scope``)."""

    __tablename__ = "imap_scope_skips"
    __table_args__ = (UniqueConstraint("account_id", "folder", "uidvalidity", "uid"),)
    id: Mapped[int] = _pk()
    account_id: Mapped[int] = _fk("imap_accounts.id", index=False)
    folder: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    examined_mark: Mapped[int] = mapped_column(BigInteger, default=0)
    message_date: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
