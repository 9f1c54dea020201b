"""Removing a mailbox (SPEC §7, ``imap remove``, ``DELETE /api/v1/me/mailboxes/{id}``).

:func:`remove_account` takes an open session and deletes the account row; the database's
cascades take its folder marks, message refs and OAuth states with it, and its pending
write-back jobs (which name the account in their payload) are deleted here. The mail it
synced stays — it is the company's record — unless ``delete_mail``: then every message
that came *only* from this mailbox (no Bcc copy, no ref from another mailbox) is deleted,
and a thread left without messages goes too. Attachment blobs no message uses any more
are collected by the periodic blob collector (``retention.interval``).

Stopping the sync first is the caller's part (``MailboxControl.stop`` in ``bccd serve``;
a sync in another process notices the row is gone at its next mark and ends).
Returns ``{"id", "removed": true, "messages_deleted": n}``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.orm import Session, aliased

from bccd.mailboxes.accounts import get_account
from bccd.mailboxes.writeback import WRITEBACK_KIND
from bccd.store.models import ImapAccount, ImapMessageRef, Message, MessageSource, OutboxJob, Thread

CHUNK = 500


def only_from(session: Session, account_id: int) -> list[int]:
    """Messages whose every source is this mailbox."""
    other = aliased(ImapMessageRef)
    q = (select(ImapMessageRef.message_id).distinct()
         .where(ImapMessageRef.account_id == account_id)
         .where(~exists().where(and_(other.message_id == ImapMessageRef.message_id,
                                     other.account_id != account_id)))
         .where(~exists().where(and_(MessageSource.message_id == ImapMessageRef.message_id,
                                     MessageSource.source == "bcc"))))
    return sorted(int(i) for i in session.scalars(q))


def remove_account(session: Session, account_id: int, *, delete_mail: bool = False) -> dict[str, Any]:
    row = get_account(session, account_id)
    msg_ids = only_from(session, row.id) if delete_mail else []
    jobs = [j.id for j in session.scalars(select(OutboxJob).where(
        OutboxJob.kind == WRITEBACK_KIND, OutboxJob.state == "pending"))
        if (j.payload or {}).get("account_id") == row.id]
    if jobs:
        session.execute(delete(OutboxJob).where(OutboxJob.id.in_(jobs)))
    session.execute(delete(ImapAccount).where(ImapAccount.id == row.id))
    thread_ids: set[int] = set()
    for i in range(0, len(msg_ids), CHUNK):
        part = msg_ids[i:i + CHUNK]
        thread_ids.update(int(t) for t in session.scalars(
            select(Message.thread_id).distinct().where(Message.id.in_(part))))
        session.execute(delete(Message).where(Message.id.in_(part)))
    for t in sorted(thread_ids):
        left = session.scalar(select(func.count()).select_from(Message).where(Message.thread_id == t))
        if not left:
            session.execute(delete(Thread).where(Thread.id == t))
        else:
            first = session.scalar(select(Message.subject).where(Message.thread_id == t)
                                   .order_by(Message.date, Message.id).limit(1))
            thread = session.get(Thread, t)
            if thread is not None and first is not None:
                thread.subject = first
    session.flush()
    return {"id": account_id, "removed": True, "messages_deleted": len(msg_ids)}
