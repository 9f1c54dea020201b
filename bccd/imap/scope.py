"""A mailbox's sync scope (SPEC §7 "Scope"): with ``known``, a synced message none of whose
counterparts is a person of the company is skipped — filing records it
(``ingest.triage.skip``: an ``ImapScopeSkip`` row with the company's newest person address
at the time, ``examined_mark``) and stores nothing.

``due(session, …)`` → the UIDs of a folder to examine again at this pass, oldest first:
the skipped ones examined before the company's newest person address existed (a person
was created, or an address added, since), or all of them when the account's scope is now
``all``. Skips of another UIDVALIDITY are dropped (their UIDs mean nothing any more), and
so are those of mail older than the initial window (``imap.initial_days``): the window
is what a first sync fetches, and what a change of scope or a new person brings back.

``forget(session, …, uids)`` removes the skips of messages that were examined again and
stored (or are gone from the folder). The caller (``imap.sync``) fetches the due UIDs
before the folder's new mail, through the same ingest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bccd.store.models import ImapScopeSkip, PersonEmail, User

MAX_DUE = 5000   # examined again per folder and pass (the rest at the next pass)


def newest_person_address(session: Session, user_id: int) -> int:
    company = select(User.company_id).where(User.id == user_id).scalar_subquery()
    return int(session.scalar(select(func.coalesce(func.max(PersonEmail.id), 0))
                              .where(PersonEmail.company_id == company)) or 0)


def due(session: Session, account_id: int, user_id: int, folder: str, uidvalidity: int,
        scope: str, since: dt.datetime | None) -> list[int]:
    mine = (ImapScopeSkip.account_id == account_id, ImapScopeSkip.folder == folder)
    session.execute(delete(ImapScopeSkip).where(*mine, ImapScopeSkip.uidvalidity != uidvalidity))
    if since is not None:
        session.execute(delete(ImapScopeSkip).where(*mine, ImapScopeSkip.message_date < since))
    q = select(ImapScopeSkip.uid).where(*mine)
    if scope == "known":
        q = q.where(ImapScopeSkip.examined_mark < newest_person_address(session, user_id))
    return list(session.scalars(q.order_by(ImapScopeSkip.uid).limit(MAX_DUE)))


def forget(session: Session, account_id: int, folder: str, uidvalidity: int,
           uids: Sequence[int]) -> None:
    for i in range(0, len(uids), 500):
        session.execute(delete(ImapScopeSkip).where(
            ImapScopeSkip.account_id == account_id, ImapScopeSkip.folder == folder,
            ImapScopeSkip.uidvalidity == uidvalidity,
            ImapScopeSkip.uid.in_(list(uids[i:i + 500]))))
