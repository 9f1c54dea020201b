"""The tables of mail written in bccd (SPEC §12), beside ``store.models`` (same metadata).

- ``Template``: a mail template with smart fields — a user's own, or shared with the
  whole company (``shared``; only admins share).
- ``Send``: one message written in bccd and sent through one of the user's mailboxes:
  the bytes that go to the submission server, which recipients are still to be sent to
  (``pending``; a temporary refusal leaves a recipient here for the outbox to retry),
  which were accepted and which refused for good (with the server's words), the state
  (``sending`` while the first attempt runs, ``queued`` between retries, ``sent``,
  ``failed`` after a retry gave up or was refused, ``refused`` when the first attempt was
  refused — then nothing was filed), the filed message (``message_id``; deleting that
  message deletes its send), and the client's ``Idempotency-Key`` with the first answer,
  which a repeat gets back. A tracked message (SPEC §13) also keeps the bytes its
  recipients get (``tracked_raw``: the pixel, the rewritten links) until nothing is
  pending; ``raw`` stays the user's own copy, as written.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bccd.store.models import ID, Base, utcnow

SEND_STATES = ("sending", "queued", "sent", "failed", "refused")


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (Index(None, "company_id", "shared"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    company_id: Mapped[int] = mapped_column(ID, ForeignKey("companies.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Send(Base):
    __tablename__ = "sends"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint("status IN ('sending', 'queued', 'sent', 'failed', 'refused')",
                        name="status"),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(
        ID, ForeignKey("imap_accounts.id", ondelete="SET NULL"), index=True)
    message_id: Mapped[int | None] = mapped_column(
        ID, ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    rfc_message_id: Mapped[str] = mapped_column(String(998))
    envelope_from: Mapped[str] = mapped_column(String(320))
    pending: Mapped[list[Any]] = mapped_column(default=list)    # recipients still to send to
    accepted: Mapped[list[Any]] = mapped_column(default=list)
    refused: Mapped[list[Any]] = mapped_column(default=list)    # [{address, reply}]
    status: Mapped[str] = mapped_column(String(16), default="sending")
    last_error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    raw: Mapped[bytes] = mapped_column(LargeBinary, default=b"")  # emptied once nothing is pending
    # the bytes for the server when tracking (SPEC §13) made them differ from ``raw`` without
    # its Bcc: the recipients' copy has the pixel and rewritten links, the user's has not
    tracked_raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    link_kind: Mapped[str | None] = mapped_column(String(16))   # the entity it was written from
    link_id: Mapped[int | None] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    response: Mapped[dict[str, Any] | None] = mapped_column()  # {status, body}: the first answer
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
