"""The mailbox poller: keeps every IMAP account in sync (SPEC §7).

:func:`run_poller` takes the settings, the database, the ingest sink and a stop event and
returns when ``stop`` is set (after closing its connections). One task per account
(active or paused, of an enabled user); the account list is re-read periodically, so
accounts added with ``bccd imap add`` are picked up while ``bccd serve`` runs.

Per account: connect, sync every planned folder (:mod:`bccd.imap.sync`), then wait for the
next pass ``imap.poll_interval`` later — in IDLE on INBOX where the server offers it, so
new mail is synced within seconds (a wake-up runs an incremental pass of all planned
folders: with ``\\All`` the new message is there too). A connection is reused for up to
``MAX_SESSION`` and then renewed (OAuth tokens are refreshed on reconnect).

Several instances on one database (SPEC §11): an account is synced by one instance at a
time — the one holding its *lease* (``imap.lease``; ``accounts.claim_lease`` is a
conditional UPDATE, so of two instances claiming at once one wins). The holder renews it
every third of the lease while connected and releases it when the session ends (stop,
failure, renewal); an instance that dies loses it when it runs out. An instance that
finds the lease taken checks again after half a lease. A renewal that fails (this
instance stalled past its lease and another took over) ends the session at once. The
release is submitted before the LOGOUT and awaited to its end even through a second
cancel (shutdown's grace running out), and it wins over a renewal still in flight
(``_Lease``). An account whose task is cancelled (its user disabled, the account
removed) starts again only once that task has ended, so the old session's release
cannot free the new session's lease (same owner).
``sync_once`` (the CLI's one pass) does not wait for leases: a second sync of the same
account is safe (dedup, monotonic marks), only wasteful.

Failure: an account that fails (login refused, untrusted certificate, host down, ingest
temporarily failing) is *paused* with its one-line reason (``imap list`` shows it) and
retried with exponential back-off from ``imap.poll_interval`` (1×, 2×, 4× … up to 6 h);
a success makes it active again. A failing account never stops the others; an
unexpected exception is logged with its traceback and treated the same way.

:func:`sync_once` runs one pass over the chosen accounts (``bccd imap sync --once``),
recording the same success/failure state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from bccd.config import Settings
from bccd.crypto import SecretBox
from bccd.errors import BccdError
from bccd.imap.client import AsyncImap, AuthFailure, ImapFailure, connect_account
from bccd.imap.sync import AccountResult, IngestSink, Progress, SyncStopped, sync_account
from bccd.log import get_logger
from bccd.mailboxes.accounts import (
    claim_lease,
    get_account,
    mark_failure,
    mark_success,
    release_lease,
    syncable_account_ids,
)
from bccd.mailboxes.control import MailboxControl
from bccd.mailboxes.progress import AccountGone
from bccd.store.db import Database
from bccd.store.models import utcnow

log = get_logger("bccd.imap.poller")

IDLE_FOLDER = "INBOX"
IDLE_MAX = 25 * 60.0  # RFC 2177: re-issue IDLE well within 29 minutes
MAX_SESSION = 30 * 60.0  # reconnect after this long (fresh OAuth token, no stale socket)
ACCOUNT_REFRESH = 5.0  # how often the account list is re-read (a removal elsewhere ends a sync)
STOP_GRACE = 10.0  # an account being stopped gets this long to end by itself, then is cancelled


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0 or stop.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


@dataclass(frozen=True, slots=True)
class _Due:
    exists: bool
    wait: float  # seconds until the next attempt (0 = now)


def _due(db: Database, account_id: int) -> _Due:
    with db.read() as session:
        try:
            row = get_account(session, account_id)
        except BccdError:
            return _Due(False, 0)
        if row.state == "disabled":
            return _Due(False, 0)
        if row.next_attempt_at is None:
            return _Due(True, 0)
        return _Due(True, max(0.0, (row.next_attempt_at - utcnow()).total_seconds()))


async def _record_failure(settings: Settings, db: Database, account_id: int, reason: str,
                          *, auth_refused: bool = False) -> None:
    def write() -> dt.datetime | None:
        with db.transaction() as session:
            return mark_failure(session, account_id, reason, poll_interval=settings.imap.poll_interval,
                                auth_refused=auth_refused)

    retry_at = await db.run(write)
    if retry_at is None:  # disabled or removed meanwhile: nothing to pause or retry
        log.info("imap_account_session_ended", account=account_id, reason=reason)
        return
    log.warning("imap_account_paused", account=account_id, reason=reason, retry_at=retry_at)


async def _record_success(db: Database, account_id: int) -> None:
    def write() -> None:
        with db.transaction() as session:
            mark_success(session, account_id)

    await db.run(write)


def _failure_reason(exc: BaseException, account_id: int) -> str:
    if isinstance(exc, ImapFailure):
        return exc.reason
    if isinstance(exc, BccdError):  # SecretError, NotFound
        return str(exc)
    log.error("imap_account_error", account=account_id, exc_info=exc)
    return f"unexpected error: {type(exc).__name__}"


async def sync_account_once(
    settings: Settings,
    db: Database,
    sink: IngestSink,
    account_id: int,
    *,
    box: SecretBox | None = None,
    progress: Progress | None = None,
) -> AccountResult:
    """Connect, sync every planned folder once, record success or pause with the reason."""
    box = box or SecretBox(settings.secret_keys)
    result = AccountResult(account_id)
    imap: AsyncImap | None = None
    labelled: Progress | None = None
    if progress is not None:
        outer = progress

        def labelled(folder: str, done: int, total: int) -> None:
            outer(f"#{account_id} {folder}", done, total)

    try:
        account, imap = await connect_account(db, box, account_id)
        await sync_account(imap, db, sink, account, settings, progress=labelled, result=result)
    except Exception as exc:
        result.error = _failure_reason(exc, account_id)
        await _record_failure(settings, db, account_id, result.error,
                              auth_refused=isinstance(exc, AuthFailure))
    else:
        await _record_success(db, account_id)
        log.info("imap_account_synced", account=account_id, stored=result.stored)
    finally:
        if imap is not None:
            await imap.close()
    return result


async def sync_once(
    settings: Settings,
    db: Database,
    sink: IngestSink,
    *,
    account_ids: list[int] | None = None,
    progress: Progress | None = None,
) -> list[AccountResult]:
    """One pass over ``account_ids`` (default: every active or paused account)."""
    box = SecretBox(settings.secret_keys)
    if account_ids is None:

        def ids() -> list[int]:
            with db.read() as session:
                return syncable_account_ids(session)

        account_ids = await db.run(ids)
    results = []
    for account_id in account_ids:
        results.append(await sync_account_once(settings, db, sink, account_id, box=box, progress=progress))
    return results


async def _settled(fut: asyncio.Future[None]) -> None:
    """Wait for ``fut`` to finish even if this task is cancelled meanwhile (a cancel that
    arrives while a session ends, at shutdown), then pass the cancel on: whoever awaits
    the poller sees the lease released."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class _Lease:
    """This instance's hold on one account (module docstring).

    A claim's database work runs in a worker thread, and cancelling the task that awaits
    it (a renewal cut short by the session's end) does not stop that thread. So a release
    must win over every claim made before it: ``release`` bumps ``_generation`` on the
    loop before its thread starts, and a claim whose thread sees a newer generation than
    the one it was made in claims nothing. The check and the claim run under ``_lock``,
    as does the release, so the two never interleave."""

    def __init__(self, db: Database, account_id: int, owner: str, seconds: float) -> None:
        self.db, self.account_id, self.owner, self.seconds = db, account_id, owner, seconds
        self._lock = threading.Lock()
        self._generation = 0

    def _claim(self, generation: int) -> bool:
        with self._lock:
            if generation != self._generation:  # released since this claim was made
                return False
            with self.db.transaction() as session:
                return claim_lease(session, self.account_id, self.owner, seconds=self.seconds)

    def _release(self) -> None:
        try:
            with self._lock, self.db.transaction() as session:
                release_lease(session, self.account_id, self.owner)
        except Exception as exc:  # it runs out by itself
            log.warning("imap_lease_release_failed", account=self.account_id, error=str(exc))

    async def claim(self) -> bool:
        return await self.db.run(self._claim, self._generation)

    def release(self) -> asyncio.Future[None]:
        """Give the lease up. Submitted at once, before anything that a second cancel
        (shutdown) could interrupt; await it through ``asyncio.shield``."""
        self._generation += 1
        return self.db.run_soon(self._release)

    async def keep(self, lost: threading.Event) -> None:
        """Renew every third of the lease; on failure set ``lost`` and return."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                held = await self.claim()
            except Exception as exc:
                log.warning("imap_lease_renewal_failed", account=self.account_id, error=str(exc))
                continue  # the next try may work; the lease still has two thirds to go
            if not held:
                log.warning("imap_lease_lost", account=self.account_id, owner=self.owner)
                lost.set()
                return


async def _account_loop(
    settings: Settings,
    db: Database,
    sink: IngestSink,
    box: SecretBox,
    account_id: int,
    stop: asyncio.Event,
    cancel: threading.Event,
    owner: str,
) -> None:
    interval = float(settings.imap.poll_interval) or 1.0
    lease = _Lease(db, account_id, owner, float(settings.imap.lease))
    elsewhere = False
    while not stop.is_set() and not cancel.is_set():
        due = await db.run(_due, db, account_id)
        if not due.exists:
            return
        if due.wait > 0:
            await _wait(stop, min(due.wait, ACCOUNT_REFRESH))
            continue
        try:
            claimed = await lease.claim()
        except asyncio.CancelledError:  # its thread may still claim: release wins (_Lease)
            await _settled(lease.release())
            raise
        if not claimed:
            if not elsewhere:
                log.info("imap_account_synced_elsewhere", account=account_id)
                elsewhere = True
            await _wait(stop, min(lease.seconds / 2, ACCOUNT_REFRESH))
            continue
        elsewhere = False
        log.info("imap_lease_taken", account=account_id, owner=owner)
        keeper = asyncio.create_task(lease.keep(cancel), name=f"imap-lease-{account_id}")
        imap: AsyncImap | None = None
        try:
            account, imap = await connect_account(db, box, account_id)
            session_end = time.monotonic() + MAX_SESSION
            can_idle = imap.has("IDLE")
            while not stop.is_set() and not cancel.is_set():
                result = await sync_account(imap, db, sink, account, settings, cancel=cancel)
                await _record_success(db, account_id)
                if result.stored:
                    log.info("imap_account_synced", account=account_id, stored=result.stored)
                deadline = time.monotonic() + interval
                while not (stop.is_set() or cancel.is_set()) and (left := deadline - time.monotonic()) > 0:
                    if not can_idle:
                        await _wait(stop, left)
                        continue
                    await imap.select(IDLE_FOLDER, readonly=True)
                    if await imap.idle_wait(min(left, IDLE_MAX), cancel):
                        log.debug("imap_idle_wakeup", account=account_id)
                        break
                if time.monotonic() >= session_end:
                    break
        except asyncio.CancelledError:
            raise
        except (SyncStopped, AccountGone):
            log.info("imap_account_stopped", account=account_id)
            return
        except Exception as exc:
            await _record_failure(settings, db, account_id, _failure_reason(exc, account_id),
                                  auth_refused=isinstance(exc, AuthFailure))
        finally:
            keeper.cancel()
            released = lease.release()  # only if still ours; submitted before the LOGOUT,
            try:  # which a hung server (or a second cancel at shutdown) may cut short
                if imap is not None:
                    await imap.close()
            finally:
                await _settled(released)


def instance_id() -> str:
    """Who holds a lease: host, process and a random part (a restarted process differs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[:200]


async def run_poller(settings: Settings, db: Database, sink: IngestSink, stop: asyncio.Event,
                     *, owner: str | None = None, control: MailboxControl | None = None) -> None:
    """Keep all accounts in sync until ``stop`` is set (those whose lease this instance
    gets: ``owner``, default ``instance_id()``). With ``control`` the fronts of this
    process can stop one account now (a removal) and wake the poller (an addition).

    An account that is no longer wanted (removed, its user disabled) is asked to stop —
    its sync ends before the next group of messages, its IDLE within a second — and is
    cancelled only if it has not ended within ``STOP_GRACE``."""
    box = SecretBox(settings.secret_keys)
    owner = owner or instance_id()
    tasks: dict[int, asyncio.Task[None]] = {}
    ending: dict[int, tuple[asyncio.Task[None], float]] = {}  # asked to stop; cancel after
    cancels: dict[int, threading.Event] = {}
    held: set[int] = set()  # being removed: not started again until released
    wake = asyncio.Event()
    refresh = min(ACCOUNT_REFRESH, float(settings.imap.poll_interval) or 1.0)

    def ids() -> list[int]:
        with db.read() as session:
            return syncable_account_ids(session)

    def end(account_id: int) -> asyncio.Task[None]:
        cancels.pop(account_id).set()
        task = tasks.pop(account_id)
        ending[account_id] = (task, time.monotonic() + STOP_GRACE)
        return task

    async def stop_one(account_id: int) -> None:
        held.add(account_id)
        task = end(account_id) if account_id in tasks else ending.get(account_id, (None, 0.0))[0]
        if task is None or task.done():
            return
        await asyncio.wait({task}, timeout=STOP_GRACE)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_GRACE)

    def release(account_id: int) -> None:
        held.discard(account_id)
        wake.set()

    if control is not None:
        control.attach_poller(stop=stop_one, release=release, wake=wake.set)
    log.info("imap_poller_started", poll_interval=settings.imap.poll_interval, owner=owner)
    try:
        while not stop.is_set():
            wake.clear()
            try:
                wanted = set(await db.run(ids)) - held
            except OperationalError as exc:  # database locked or unreachable: keep going
                log.warning("imap_poller_db_unavailable", error=str(exc).splitlines()[0])
                wanted = set(tasks)
            except Exception:
                log.exception("imap_poller_accounts_failed")
                wanted = set(tasks)
            for account_id, task in list(tasks.items()):
                if task.done() or account_id not in wanted:
                    end(account_id)
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        log.error(
                            "imap_account_task_failed",
                            account=account_id,
                            exc_info=task.exception(),
                        )
            now = time.monotonic()
            for account_id, (task, deadline) in list(ending.items()):
                if task.done():
                    del ending[account_id]
                elif now >= deadline:
                    task.cancel()
            # an account whose last task is still ending starts again once it has: the
            # same owner's new claim must not be released by the old task's release
            for account_id in sorted(wanted - tasks.keys() - ending.keys()):
                cancels[account_id] = threading.Event()
                tasks[account_id] = asyncio.create_task(
                    _account_loop(settings, db, sink, box, account_id, stop, cancels[account_id],
                                  owner),
                    name=f"imap-account-{account_id}",
                )
            await _wait_either(stop, wake, refresh)
    finally:
        if control is not None:
            control.detach_poller()
        for ev in cancels.values():
            ev.set()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), *(t for t, _ in ending.values()),
                             return_exceptions=True)
        log.info("imap_poller_stopped")


async def _wait_either(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
