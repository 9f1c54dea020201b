"""Write-back planning (SPEC §7): archiving or deleting a thread in bccd becomes durable
jobs for the mailboxes that hold its messages; ``bccd.imap.writeback`` performs them.

:func:`enqueue_writeback` takes an open session, a thread id and the bccd action
(``archive`` or ``delete``) and adds one ``OutboxJob`` (kind ``imap_writeback``) per
account that holds messages of the thread, committed with the caller's transaction. The
job carries the refs themselves (folder, UIDVALIDITY, UID), so it still works after the
thread's messages are deleted — call it *before* deleting them. What happens on the
server follows the account's ``on_archive`` (:func:`server_action`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.errors import Invalid
from bccd.log import get_logger
from bccd.store.models import ImapAccount, ImapMessageRef, Message, OutboxJob

log = get_logger("bccd.imap.writeback")

WRITEBACK_KIND = "imap_writeback"
ACTIONS = ("archive", "delete")


def server_action(bccd_action: str, on_archive: str) -> str | None:
    """What to do on the server (``archive``/``delete``) for a bccd action, or None."""
    if on_archive == "none":
        return None
    return on_archive if bccd_action == "archive" else "delete"


def enqueue_writeback(session: Session, thread_id: int, action: str) -> list[OutboxJob]:
    """Queue the server side of archiving/deleting ``thread_id``; returns the new jobs."""
    if action not in ACTIONS:
        raise Invalid(f"write-back action must be archive or delete, not {action!r}")
    rows = session.execute(
        select(ImapMessageRef, ImapAccount.on_archive)
        .join(Message, Message.id == ImapMessageRef.message_id)
        .join(ImapAccount, ImapAccount.id == ImapMessageRef.account_id)
        .where(Message.thread_id == thread_id)
        .order_by(ImapMessageRef.account_id, ImapMessageRef.folder, ImapMessageRef.uid)
    ).all()
    per_account: dict[int, list[dict[str, Any]]] = defaultdict(list)
    todo: dict[int, str] = {}
    for ref, on_archive in rows:
        what = server_action(action, on_archive)
        if what is None:
            continue
        todo[ref.account_id] = what
        per_account[ref.account_id].append(
            {"folder": ref.folder, "uidvalidity": ref.uidvalidity, "uid": ref.uid}
        )
    jobs = []
    for account_id, refs in per_account.items():
        job = OutboxJob(
            kind=WRITEBACK_KIND,
            payload={
                "account_id": account_id,
                "action": todo[account_id],
                "thread_id": thread_id,
                "refs": refs,
            },
        )
        session.add(job)
        jobs.append(job)
    if jobs:
        session.flush()
        log.info("imap_writeback_queued", thread=thread_id, action=action, jobs=[j.id for j in jobs])
    return jobs
