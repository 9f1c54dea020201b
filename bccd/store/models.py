"""Typed SQLAlchemy 2 models for the whole SPEC §1 domain.

Every rule that must hold across instances is a constraint here, not a check in code:
one message per (user, dedup key), one person email per company, one link per
(thread, entity), one thread per referenced Message-ID per user. Constraint names follow
``NAMING_CONVENTION`` so migrations stay reviewable.

Deals, leads and projects share the ``items`` table (column ``kind``): the linking rule
counts them together (SPEC §5.6), and a pinned address names ``<kind>-<id>``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON,
    }


ID = BigInteger().with_variant(Integer(), "sqlite")


def _pk() -> Mapped[int]:
    return mapped_column(ID, primary_key=True, autoincrement=True)


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE", index: bool = True) -> Any:
    return mapped_column(ID, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


_CATEGORY_CHECK = "category IN ('person', 'internal', 'bounce', 'auto_reply', 'bulk')"


class Company(Base):
    __tablename__ = "companies"
    __table_args__ = (
        CheckConstraint("automated_mail IN ('unlinked', 'store', 'drop')", name="automated_mail"),
        CheckConstraint("internal_mail IN ('store', 'drop')", name="internal_mail"),
    )
    id: Mapped[int] = _pk()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    create_unknown_contacts: Mapped[bool] = mapped_column(Boolean, default=True)
    # open and click tracking of mail sent from bccd (SPEC §13): allowed | off
    tracking: Mapped[str] = mapped_column(String(16), default="allowed",
                                          server_default="allowed")
    # SPEC §5.10: its own mail domains (None: its users' login domains), and what becomes
    # of automated (auto_reply, bulk) and internal mail (``bccd.linking.categories``)
    domains: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    automated_mail: Mapped[str] = mapped_column(String(16), default="unlinked",
                                                server_default="unlinked")
    internal_mail: Mapped[str] = mapped_column(String(16), default="store", server_default="store")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("sharing_default IN ('private', 'shared')", name="sharing_default"),
        CheckConstraint("linking_mode IN ('auto', 'manual')", name="linking_mode"),
        CheckConstraint("email_links IN ('app', 'default-client')", name="email_links"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id")
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    api_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    bcc_token: Mapped[str] = mapped_column(String(64), unique=True)
    sharing_default: Mapped[str] = mapped_column(String(16), default="private")
    linking_mode: Mapped[str] = mapped_column(String(16), default="auto")
    email_links: Mapped[str] = mapped_column(String(16), default="app")
    signature_html: Mapped[str] = mapped_column(Text, default="", server_default="")  # sanitized
    # SPEC §13: track opens and clicks of mail this user sends from bccd (off by default)
    tracking_opens: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    tracking_clicks: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    company: Mapped[Company] = relationship(lazy="joined")


class Alternate(Base):
    __tablename__ = "alternates"
    __table_args__ = (
        UniqueConstraint("user_id", "email"),
        CheckConstraint("status IN ('pending', 'confirmed')", name="status"),
    )
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id")
    email: Mapped[str] = mapped_column(String(320), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[dt.datetime | None]
    last_sent_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[dt.datetime | None]


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (
        UniqueConstraint("company_id", "external_id"),
        CheckConstraint("visible_to IN ('company', 'owner')", name="visible_to"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id")
    name: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    owner_id: Mapped[int | None] = _fk("users.id", nullable=True, ondelete="SET NULL")
    visible_to: Mapped[str] = mapped_column(String(16), default="company")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Person(Base):
    __tablename__ = "persons"
    __table_args__ = (
        UniqueConstraint("company_id", "external_id"),
        CheckConstraint("visible_to IN ('company', 'owner')", name="visible_to"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id")
    name: Mapped[str] = mapped_column(String(255), default="")
    organization_id: Mapped[int | None] = _fk("organizations.id", nullable=True, ondelete="SET NULL")
    external_id: Mapped[str | None] = mapped_column(String(255))
    owner_id: Mapped[int | None] = _fk("users.id", nullable=True, ondelete="SET NULL")
    visible_to: Mapped[str] = mapped_column(String(16), default="company")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    emails: Mapped[list[PersonEmail]] = relationship(
        order_by="PersonEmail.id", cascade="all, delete-orphan", passive_deletes=True
    )


class PersonEmail(Base):
    """One address of a person; unique per company — the index the linking rules use."""

    __tablename__ = "person_emails"
    __table_args__ = (UniqueConstraint("company_id", "email"),)
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id", index=False)
    person_id: Mapped[int] = _fk("persons.id")
    email: Mapped[str] = mapped_column(String(320))
    # a bounce of the owner's mail said this address fails (SPEC §5.10); cleared by a
    # later message from it
    bouncing_since: Mapped[dt.datetime | None]
    bounce_reason: Mapped[str | None] = mapped_column(Text)


class Item(Base):
    """A deal, lead or project (``kind``)."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("company_id", "kind", "external_id"),
        CheckConstraint("kind IN ('deal', 'lead', 'project')", name="kind"),
        CheckConstraint(
            "(kind = 'deal' AND status IN ('open', 'won', 'lost'))"
            " OR (kind = 'lead' AND status IN ('open', 'archived'))"
            " OR (kind = 'project' AND status IN ('open', 'closed'))",
            name="status",
        ),
        CheckConstraint("visible_to IN ('company', 'owner')", name="visible_to"),
        Index(None, "person_id", "status"),
        Index(None, "organization_id", "status"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id")
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="open")
    person_id: Mapped[int | None] = _fk("persons.id", nullable=True, ondelete="SET NULL", index=False)
    organization_id: Mapped[int | None] = _fk(
        "organizations.id", nullable=True, ondelete="SET NULL", index=False
    )
    deal_id: Mapped[int | None] = _fk("items.id", nullable=True, ondelete="SET NULL")
    external_id: Mapped[str | None] = mapped_column(String(255))
    owner_id: Mapped[int | None] = _fk("users.id", nullable=True, ondelete="SET NULL")
    visible_to: Mapped[str] = mapped_column(String(16), default="company")
    value: Mapped[str | None] = mapped_column(String(64))  # as the CRM shows it: "12,000 EUR"
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Thread(Base):
    __tablename__ = "threads"
    __table_args__ = (
        CheckConstraint("visibility IN ('private', 'shared')", name="visibility"),
        CheckConstraint("link_state IN ('linked', 'needs_choice', 'no_open_item', 'no_person',"
                        " 'manual_mode', 'automated')", name="link_state"),
        CheckConstraint(_CATEGORY_CHECK, name="category"),
        Index(None, "owner_id", "last_message_at"),
        Index(None, "company_id", "link_state"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id")
    owner_id: Mapped[int] = _fk("users.id", index=False)
    subject: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    # the user linked or unlinked a deal/lead/project by hand: automatic item linking
    # (SPEC §5.6 rule 3) leaves this thread alone from then on
    manual_items: Mapped[bool] = mapped_column(Boolean, default=False)
    # why it is (not) linked to a deal/lead/project (SPEC §5.12, ``linking.linkstate``)
    link_state: Mapped[str] = mapped_column(String(16), default="no_person",
                                            server_default="no_person")
    gm_thrid: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # SPEC §5.10: the most human category of its messages (``linking.categories``), and
    # whether every message of it was filed "unlinked" (its link_state is then automated)
    category: Mapped[str] = mapped_column(String(16), default="person", server_default="person")
    automated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ThreadRef(Base):
    """Every Message-ID a user's thread contains or references → that thread.

    A reply that arrives before its parent registers the parent's id; when the parent
    arrives it finds the thread here. Unique per user, so concurrent creators agree.
    """

    __tablename__ = "thread_refs"
    __table_args__ = (UniqueConstraint("user_id", "ref"),)
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id", index=False)
    ref: Mapped[str] = mapped_column(String(998))
    thread_id: Mapped[int] = _fk("threads.id")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("user_id", "dedup_key"),
        CheckConstraint("direction IN ('incoming', 'outgoing')", name="direction"),
        CheckConstraint(_CATEGORY_CHECK, name="category"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id")
    user_id: Mapped[int] = _fk("users.id", index=False)
    thread_id: Mapped[int] = _fk("threads.id")
    dedup_key: Mapped[str] = mapped_column(String(998))
    message_id: Mapped[str | None] = mapped_column(String(998))
    direction: Mapped[str] = mapped_column(String(16))
    from_addr: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[dt.datetime | None]
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    raw_size: Mapped[int] = mapped_column(Integer, default=0)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    auth: Mapped[dict[str, Any]] = mapped_column(default=dict)
    forwarded_by: Mapped[str | None] = mapped_column(String(320))
    # synced mail whose From claims the user, not proven theirs (SPEC §7): filed incoming
    unverified_sender: Mapped[bool] = mapped_column(Boolean, default=False,
                                                    server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # SPEC §5.10: decided by ``ingest.categorize``, with the reason of the check that did
    category: Mapped[str] = mapped_column(String(16), default="person", server_default="person")
    category_reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class MessageRaw(Base):
    """The raw bytes, byte-for-byte, committed in the same transaction as the records."""

    __tablename__ = "message_raw"
    message_id: Mapped[int] = mapped_column(
        ID, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class MessageSource(Base):
    __tablename__ = "message_sources"
    __table_args__ = (
        UniqueConstraint("message_id", "source"),
        CheckConstraint("source IN ('bcc', 'imap', 'compose')", name="source"),
    )
    id: Mapped[int] = _pk()
    message_id: Mapped[int] = _fk("messages.id", index=False)
    source: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        CheckConstraint("role IN ('from', 'to', 'cc', 'bcc', 'reply-to')", name="role"),
        Index(None, "company_id", "email"),
    )
    id: Mapped[int] = _pk()
    company_id: Mapped[int] = _fk("companies.id", index=False)
    message_id: Mapped[int] = _fk("messages.id")
    role: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(Text, default="")
    person_id: Mapped[int | None] = _fk("persons.id", nullable=True, ondelete="SET NULL")


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = _pk()
    message_id: Mapped[int] = _fk("messages.id")
    filename: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_id: Mapped[str | None] = mapped_column(String(998))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)


class Link(Base):
    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("thread_id", "kind", "entity_id"),
        CheckConstraint(
            "kind IN ('person', 'organization', 'deal', 'lead', 'project')", name="kind"
        ),
        CheckConstraint("how IN ('auto', 'manual', 'address', 'thread')", name="how"),
        Index(None, "kind", "entity_id"),
        # SPEC §5.6: a thread has at most one deal/lead/project link
        Index(
            "uq_links_one_item_per_thread", "thread_id", unique=True,
            sqlite_where=text("kind IN ('deal', 'lead', 'project')"),
            postgresql_where=text("kind IN ('deal', 'lead', 'project')"),
        ),
    )
    id: Mapped[int] = _pk()
    thread_id: Mapped[int] = _fk("threads.id", index=False)
    kind: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(ID)
    how: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Suggestion(Base):
    __tablename__ = "suggestions"
    __table_args__ = (UniqueConstraint("thread_id", "kind", "entity_id"),)
    id: Mapped[int] = _pk()
    thread_id: Mapped[int] = _fk("threads.id", index=False)
    kind: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(ID)


class Blocked(Base):
    __tablename__ = "blocked"
    __table_args__ = (UniqueConstraint("user_id", "pattern"),)
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id", index=False)
    pattern: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Rejection(Base):
    """A refused copy: who it was for, why, and the verdicts — never the body."""

    __tablename__ = "rejections"
    id: Mapped[int] = _pk()
    user_id: Mapped[int | None] = _fk("users.id", nullable=True)
    recipient: Mapped[str] = mapped_column(String(320))
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    from_header: Mapped[str] = mapped_column(Text, default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    message_id: Mapped[str | None] = mapped_column(String(998))
    code: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    auth: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Quarantined(Base):
    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("user_id", "dedup_key"),)
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id", index=False)
    from_addr: Mapped[str] = mapped_column(String(320), index=True)
    dedup_key: Mapped[str] = mapped_column(String(998))
    subject: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    envelope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    auth: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    released_at: Mapped[dt.datetime | None]


class Notice(Base):
    """When the user was last told about copies from ``address`` (one notice a day)."""

    __tablename__ = "notices"
    __table_args__ = (UniqueConstraint("user_id", "address"),)
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id", index=False)
    address: Mapped[str] = mapped_column(String(320))
    last_sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ConfirmationSend(Base):
    """One confirmation mail sent for a user (SPEC §6). The interval per (user, address)
    and the user's daily cap are counted here — not on the alternate, so removing and
    adding an address again resets neither. Rows past both windows are pruned as the user
    sends more."""

    __tablename__ = "confirmation_sends"
    __table_args__ = (Index(None, "user_id", "sent_at"),)
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id", index=False)
    email: Mapped[str] = mapped_column(String(320))
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Counter(Base):
    """Per-user counters for things that are counted but not stored (blocked drops)."""

    __tablename__ = "counters"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[int] = _pk()
    user_id: Mapped[int] = _fk("users.id", index=False)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class OutboxJob(Base):
    """Durable work: outbound mail, webhooks, IMAP write-back. Retried with back-off."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'done', 'failed')", name="state"),
        Index(None, "state", "next_attempt_at"),
    )
    id: Mapped[int] = _pk()
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]



# the tables of mail written in bccd (SPEC §12) and of its tracking (§13), on the same
# metadata; OAuth states and emailed sign-in links (SPEC §7, §9) live in their own module
import bccd.store.models_compose  # noqa: E402,F401
import bccd.store.models_tracking  # noqa: E402,F401
from bccd.store import models_storage as _storage  # noqa: E402,F401  (its tables in Base.metadata)
from bccd.store.grants import OAuthState as OAuthState  # noqa: E402
from bccd.store.grants import SigninLink as SigninLink  # noqa: E402
from bccd.store.grants import WebSession as WebSession  # noqa: E402
from bccd.store.mailbox_models import ImapAccount as ImapAccount  # noqa: E402
from bccd.store.mailbox_models import ImapFolderState as ImapFolderState  # noqa: E402
from bccd.store.mailbox_models import ImapMessageRef as ImapMessageRef  # noqa: E402
from bccd.store.mailbox_models import ImapScopeSkip as ImapScopeSkip  # noqa: E402
from bccd.store.meeting_models import Meeting as Meeting  # noqa: E402
