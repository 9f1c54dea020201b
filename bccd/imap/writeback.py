"""Write-back: archiving or deleting a thread in bccd acts on the IMAP server (SPEC §7).

The jobs are planned by ``bccd.mailboxes.writeback.enqueue_writeback`` (one durable
``OutboxJob``, kind ``imap_writeback``, per account that holds messages of the thread,
carrying the refs: folder, UIDVALIDITY, UID). What happens on the server follows the
account's ``on_archive``:

- archiving a thread: ``none`` → nothing; ``archive`` → move to the SPECIAL-USE
  ``\\Archive`` folder (Gmail: remove the ``\\Inbox`` label — Gmail's own "archive");
  ``delete`` → delete as below.
- deleting a thread: when write-back is on (``on_archive`` ≠ ``none``) the messages are
  deleted on the server too: moved to ``\\Trash``, or — already in ``\\Trash``, or there is
  none — flagged ``\\Deleted`` and removed with ``UID EXPUNGE`` of exactly those UIDs.

A move is ``UID MOVE``; without MOVE it is ``UID COPY`` + ``STORE \\Deleted`` +
``UID EXPUNGE`` of exactly those UIDs, which needs UIDPLUS. A plain ``EXPUNGE`` would also
remove the user's other ``\\Deleted`` mail, so without UIDPLUS the job fails instead.
Refs whose UIDVALIDITY no longer matches the folder are skipped (their UIDs may now name
other messages); refs acted upon are removed.

:func:`run_writeback` performs the jobs until ``stop`` is set. Failure: a job that fails
is retried with exponential back-off (1 min, 2 min … up to 6 h) and marked ``failed``
with its reason after ``MAX_ATTEMPTS`` or at once when retrying cannot help (no
``\\Archive`` folder, neither MOVE nor UIDPLUS, undecryptable credentials). Every
attempt is logged; jobs are claimed with a lease, so several instances never perform the
same job at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import OperationalError

from bccd.config import Settings
from bccd.crypto import SecretBox, SecretError
from bccd.errors import BccdError, NotFound
from bccd.imap.client import AsyncImap, ImapFailure, connect_account, find_special
from bccd.log import get_logger
from bccd.mailboxes.writeback import ACTIONS, WRITEBACK_KIND
from bccd.store.db import Database
from bccd.store.models import ImapMessageRef, OutboxJob, utcnow

log = get_logger("bccd.imap.writeback")

MAX_ATTEMPTS = 8
LEASE = dt.timedelta(minutes=10)
RETRY_BASE = 60.0
RETRY_MAX = 6 * 3600.0


class WritebackImpossible(ImapFailure):
    """Retrying cannot help (missing folder or capability): the job fails at once."""


# ---------------------------------------------------------------- jobs (blocking)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    attempts: int
    payload: dict[str, Any]


def _claim(db: Database, limit: int) -> list[_Claimed]:
    now = utcnow()
    with db.read() as session:
        candidates = session.execute(
            select(OutboxJob.id, OutboxJob.attempts, OutboxJob.payload)
            .where(
                OutboxJob.kind == WRITEBACK_KIND,
                OutboxJob.state == "pending",
                OutboxJob.next_attempt_at <= now,
            )
            .order_by(OutboxJob.id)
            .limit(limit)
        ).all()
    claimed = []
    for job_id, attempts, payload in candidates:
        with db.transaction() as session:
            res = session.execute(
                update(OutboxJob)
                # ``attempts`` is the version: whoever bumps it first owns the lease
                .where(
                    OutboxJob.id == job_id,
                    OutboxJob.state == "pending",
                    OutboxJob.attempts == attempts,
                )
                .values(next_attempt_at=now + LEASE, attempts=OutboxJob.attempts + 1)
            )
            if getattr(res, "rowcount", 0) == 1:
                claimed.append(_Claimed(job_id, attempts + 1, dict(payload)))
    return claimed


def _finish(db: Database, job: _Claimed, done_refs: list[dict[str, Any]]) -> None:
    account_id = int(job.payload["account_id"])
    with db.transaction() as session:
        row = session.get(OutboxJob, job.id)
        if row is not None and row.attempts == job.attempts:  # our lease still (fencing)
            row.state = "done"
            row.done_at = utcnow()
            row.last_error = ""
        if done_refs:
            session.execute(
                delete(ImapMessageRef).where(
                    ImapMessageRef.account_id == account_id,
                    or_(
                        *[
                            and_(
                                ImapMessageRef.folder == r["folder"],
                                ImapMessageRef.uidvalidity == r["uidvalidity"],
                                ImapMessageRef.uid == r["uid"],
                            )
                            for r in done_refs
                        ]
                    ),
                )
            )


def _fail(db: Database, job: _Claimed, reason: str, *, permanent: bool) -> str:
    with db.transaction() as session:
        row = session.get(OutboxJob, job.id)
        if row is None:
            return "gone"
        if row.attempts != job.attempts:  # the lease ran out and another worker claimed it
            return row.state
        row.last_error = reason[:500]
        if permanent or job.attempts >= MAX_ATTEMPTS:
            row.state = "failed"
        else:
            delay = min(RETRY_BASE * 2 ** (job.attempts - 1), RETRY_MAX)
            row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        return row.state


# ---------------------------------------------------------------- the IMAP side


async def _move(imap: AsyncImap, uids: list[int], dest: str) -> None:
    client = imap.conn.client
    if imap.has("MOVE"):
        await imap.call(client.move, uids, dest)
    elif imap.has("UIDPLUS"):
        await imap.call(client.copy, uids, dest)
        await imap.call(client.add_flags, uids, [b"\\Deleted"], True)
        await imap.call(client.uid_expunge, uids)
    else:
        raise WritebackImpossible(f"server {imap.where} has neither MOVE nor UIDPLUS")


async def _expunge(imap: AsyncImap, uids: list[int]) -> None:
    if not imap.has("UIDPLUS"):
        raise WritebackImpossible(
            f"server {imap.where} lacks UIDPLUS: refusing a plain EXPUNGE of other deleted mail"
        )
    client = imap.conn.client
    await imap.call(client.add_flags, uids, [b"\\Deleted"], True)
    await imap.call(client.uid_expunge, uids)


async def _perform(imap: AsyncImap, action: str, refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Act on ``refs``; returns the refs whose UID no longer exists in its folder."""
    folders = await imap.list_folders()
    names = {f.name for f in folders}
    dest: str | None = None
    if action == "archive" and not imap.is_gmail:
        dest = find_special(folders, "\\Archive")
        if dest is None:
            raise WritebackImpossible(f"server {imap.where} has no \\Archive folder")
    elif action == "delete":
        dest = find_special(folders, "\\Trash")
    by_folder: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in refs:
        by_folder[str(r["folder"])].append(r)
    gone: list[dict[str, Any]] = []
    for folder, items in by_folder.items():
        if folder not in names:
            log.warning("imap_writeback_folder_gone", folder=folder)
            continue
        sel = await imap.select(folder, readonly=False)
        current = [r for r in items if int(r["uidvalidity"]) == sel.uidvalidity]
        if len(current) < len(items):
            log.warning("imap_writeback_stale_refs", folder=folder, stale=len(items) - len(current))
        uids = sorted({int(r["uid"]) for r in current})
        if not uids:
            continue
        if action == "archive" and imap.is_gmail:
            # Gmail's own "archive": the message stays in All Mail, only the label goes
            await imap.call(imap.conn.client.remove_gmail_labels, uids, ["\\Inbox"], True)
        elif folder == dest and action == "archive":
            continue  # already archived
        elif dest is not None and folder != dest:
            await _move(imap, uids, dest)
            gone.extend(current)
        else:
            await _expunge(imap, uids)
            gone.extend(current)
    return gone


async def process_writeback_jobs(
    settings: Settings, db: Database, *, box: SecretBox | None = None, limit: int = 20
) -> int:
    """Perform the due write-back jobs once; returns how many were attempted."""
    box = box or SecretBox(settings.secret_keys)
    jobs = await db.run(_claim, db, limit)
    for job in jobs:
        account_id = int(job.payload.get("account_id", 0))
        action = str(job.payload.get("action", ""))
        refs = list(job.payload.get("refs", []))
        imap: AsyncImap | None = None
        try:
            if action not in ACTIONS:
                raise WritebackImpossible(f"unknown write-back action {action!r}")
            _account, imap = await connect_account(db, box, account_id)
            done = await _perform(imap, action, refs)
        except Exception as exc:
            permanent = isinstance(exc, WritebackImpossible | SecretError | NotFound)
            if isinstance(exc, ImapFailure):
                reason = exc.reason
            elif isinstance(exc, BccdError):
                reason = str(exc)
            else:
                log.error("imap_writeback_error", job=job.id, exc_info=exc)
                reason = f"unexpected error: {type(exc).__name__}"
            state = await db.run(_fail, db, job, reason, permanent=permanent)
            log.warning(
                "imap_writeback_failed",
                job=job.id,
                account=account_id,
                action=action,
                attempt=job.attempts,
                state=state,
                reason=reason,
            )
        else:
            await db.run(_finish, db, job, done)
            log.info(
                "imap_writeback_done",
                job=job.id,
                account=account_id,
                action=action,
                messages=len(done),
            )
        finally:
            if imap is not None:
                await imap.close()
    return len(jobs)


async def run_writeback(
    settings: Settings, db: Database, stop: asyncio.Event, *, interval: float = 5.0
) -> None:
    """Perform write-back jobs until ``stop`` is set."""
    box = SecretBox(settings.secret_keys)
    while not stop.is_set():
        try:
            n = await process_writeback_jobs(settings, db, box=box)
        except OperationalError as exc:  # database locked or unreachable: try again later
            log.warning("imap_writeback_db_unavailable", error=str(exc).splitlines()[0])
            n = 0
        except Exception:
            log.exception("imap_writeback_loop_failed")
            n = 0
        if n == 0 and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
