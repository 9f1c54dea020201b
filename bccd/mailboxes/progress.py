"""A mailbox's sync status as a person reads it (SPEC §7): messages synced, the running
pass's progress (done of total), and whether the first full pass is over
(``ImapAccount.initial_synced_at``, set by ``accounts.mark_success``).

The sync (``bccd.imap.sync``) calls these inside the transactions it already makes:
:func:`begin_pass` when a pass starts, :func:`add_total` when a folder's candidates are
known, :func:`record` with each group's mark. :func:`record` raises :class:`AccountGone`
when the account was removed meanwhile (by another process): the sync ends there.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from bccd.errors import NotFound
from bccd.store.models import ImapAccount


class AccountGone(NotFound):
    """The mailbox was removed while it was being synced."""


def begin_pass(session: Session, account_id: int) -> None:
    session.execute(update(ImapAccount).where(ImapAccount.id == account_id)
                    .values(sync_done=0, sync_total=0))


def add_total(session: Session, account_id: int, candidates: int) -> None:
    if candidates:
        session.execute(update(ImapAccount).where(ImapAccount.id == account_id)
                        .values(sync_total=ImapAccount.sync_total + candidates))


def record(session: Session, account_id: int, *, done: int, stored: int) -> None:
    result = session.execute(
        update(ImapAccount).where(ImapAccount.id == account_id)
        .values(sync_done=ImapAccount.sync_done + done,
                messages_synced=ImapAccount.messages_synced + stored))
    if getattr(result, "rowcount", 1) == 0:
        raise AccountGone(f"mailbox {account_id} was removed")
