"""Helpers for the IMAP suite: test sinks, message builder, database probes."""

from __future__ import annotations

import email
import email.utils
import hashlib
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bccd import replies as R
from bccd.imap.sync import IngestSink
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.types import ImapOrigin, Turn
from bccd.store.db import Database
from bccd.store.models import (
    Alternate,
    ImapMessageRef,
    Message,
    MessageRaw,
    MessageSource,
    Thread,
    User,
)


def make_message(
    frm: str,
    to: str,
    *,
    subject: str = "Hello",
    message_id: str | None = None,
    body: str = "Hi,\nlet's talk.\n",
    in_reply_to: str | None = None,
) -> bytes:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(localtime=False)
    m["Message-ID"] = message_id or email.utils.make_msgid(domain="test.example")
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content(body)
    return m.as_bytes().replace(b"\n", b"\r\n")


class RecordingSink:
    """A stand-in for ``Pipeline.ingest_imap``: dedup by (user, Message-ID), direction by
    the user's login/confirmed alternates, a source row and an ImapMessageRef — all in one
    transaction, like the real one."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: list[ImapOrigin] = []

    async def ingest_imap(self, raw: bytes, *, user_id: int, origin: ImapOrigin,
                          turn: Turn | None = None) -> Outcome:
        self.calls.append(origin)
        return await self.db.run(self._store, raw, user_id, origin)

    def _store(self, raw: bytes, user_id: int, origin: ImapOrigin) -> Outcome:
        msg = email.message_from_bytes(raw)
        mid = (msg.get("Message-ID") or "").strip()
        key = mid or "sha256:" + hashlib.sha256(raw).hexdigest()
        sender = email.utils.parseaddr(msg.get("From", ""))[1].lower()
        with self.db.transaction() as s:
            u = s.get(User, user_id)
            assert u is not None
            own = {u.email} | set(
                s.scalars(
                    select(Alternate.email).where(
                        Alternate.user_id == user_id, Alternate.status == "confirmed"
                    )
                )
            )
            existing = s.scalar(select(Message).where(Message.user_id == user_id, Message.dedup_key == key))
            disposition = Disposition.DUPLICATE
            if existing is None:
                t = Thread(company_id=u.company_id, owner_id=user_id, subject=msg.get("Subject", ""))
                s.add(t)
                s.flush()
                existing = Message(
                    company_id=u.company_id,
                    user_id=user_id,
                    thread_id=t.id,
                    dedup_key=key,
                    message_id=mid or None,
                    direction="outgoing" if sender in own else "incoming",
                    from_addr=sender,
                    subject=msg.get("Subject", ""),
                    raw_size=len(raw),
                    raw_sha256=hashlib.sha256(raw).hexdigest(),
                )
                s.add(existing)
                s.flush()
                s.add(MessageRaw(message_id=existing.id, raw=raw))
                disposition = Disposition.STORED
            if (
                s.scalar(
                    select(MessageSource.id).where(
                        MessageSource.message_id == existing.id, MessageSource.source == "imap"
                    )
                )
                is None
            ):
                s.add(MessageSource(message_id=existing.id, source="imap"))
            try:
                with s.begin_nested():
                    s.add(
                        ImapMessageRef(
                            message_id=existing.id,
                            account_id=origin.account_id,
                            folder=origin.folder,
                            uidvalidity=origin.uidvalidity,
                            uid=origin.uid,
                        )
                    )
            except IntegrityError:
                pass
            return Outcome(disposition, R.STORED, message_id=existing.id, thread_id=existing.thread_id)


class FailingSink:
    """Wraps a sink; after ``fail_after`` successful calls every call fails (raises or
    returns TEMPFAIL), like a database outage in the middle of a batch — or, ``once``, only
    the call after them (a passing failure)."""

    def __init__(self, inner: IngestSink, fail_after: int, *, mode: str = "raise",
                 once: bool = False) -> None:
        self.inner = inner
        self.fail_after = fail_after
        self.mode = mode
        self.once = once
        self.ok = 0
        self.failed = 0

    async def ingest_imap(self, raw: bytes, *, user_id: int, origin: ImapOrigin,
                          turn: Turn | None = None) -> Outcome:
        if self.ok >= self.fail_after and not (self.once and self.failed):
            self.failed += 1
            if self.mode == "raise":
                raise RuntimeError("simulated crash mid-batch")
            return Outcome(Disposition.TEMPFAIL, R.TEMP_FAILURE, reason="simulated outage")
        self.ok += 1
        return await self.inner.ingest_imap(raw, user_id=user_id, origin=origin, turn=turn)


def stored(db: Database, user_id: int) -> list[dict[str, Any]]:
    """Every stored message of the user: message_id, direction, sources, refs."""
    with db.read() as s:
        rows = s.scalars(select(Message).where(Message.user_id == user_id).order_by(Message.id)).all()
        out = []
        for m in rows:
            sources = sorted(s.scalars(select(MessageSource.source).where(MessageSource.message_id == m.id)))
            refs = s.execute(
                select(ImapMessageRef.folder, ImapMessageRef.uidvalidity, ImapMessageRef.uid).where(
                    ImapMessageRef.message_id == m.id
                )
            ).all()
            out.append(
                {
                    "id": m.id,
                    "message_id": (m.message_id or "").strip("<>"),
                    "direction": m.direction,
                    "thread_id": m.thread_id,
                    "sources": sources,
                    "refs": [tuple(r) for r in refs],
                }
            )
        return out
