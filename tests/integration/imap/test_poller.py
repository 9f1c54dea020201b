"""The poller: a failing account is paused with its reason and retried with back-off while
the others keep syncing; IDLE brings new mail in without waiting for the poll interval."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bccd.config import Settings
from bccd.imap.poller import _Lease, run_poller
from bccd.imap.sync import IngestSink
from bccd.store.db import Database
from bccd.store.models import ImapAccount
from tests.integration.imap.conftest import BOTH_ENGINES, USER_EMAIL, BccdUser
from tests.integration.imap.helpers import make_message, stored
from tests.support.dovecot import Dovecot
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.spec("7")

BOB = "Bob Client <bob@client.test>"


def _row(db: Database, account_id: int) -> ImapAccount:
    with db.read() as s:
        row = s.get(ImapAccount, account_id)
        assert row is not None
        return row


async def test_wrong_password_paused_other_account_keeps_syncing_and_idle(
    dovecot: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good_user = dovecot.add_user("poll-good", "good-pw")
    bad_user = dovecot.add_user("poll-bad", "right-pw")
    dovecot.append(good_user, make_message(BOB, USER_EMAIL, message_id="<g1@client.test>"))
    dovecot.append(bad_user, make_message(BOB, USER_EMAIL, message_id="<b1@client.test>"))
    bad = add_account(dovecot, bad_user, password="WRONG-pw-1234")
    good = add_account(dovecot, good_user)
    # a long poll interval: the second message can only arrive this fast through IDLE
    slow = settings.model_copy(update={"imap": settings.imap.model_copy(update={"poll_interval": 60})})
    stop = asyncio.Event()
    caplog.set_level(logging.DEBUG)
    task = asyncio.create_task(run_poller(slow, db, sink, stop))
    try:
        await wait_until_async(lambda: len(stored(db, bccd_user.id)) == 1)
        await wait_until_async(lambda: _row(db, bad).state == "paused")
        row = _row(db, bad)
        assert row.state_reason.startswith("login to 127.0.0.1:")
        assert "refused" in row.state_reason and "AUTHENTICATIONFAILED" in row.state_reason
        assert row.failures == 1 and row.next_attempt_at is not None
        assert _row(db, good).state == "active"

        await asyncio.sleep(0.5)  # the good account is now idling on INBOX
        dovecot.append(good_user, make_message(BOB, USER_EMAIL, message_id="<g2@client.test>"))
        await wait_until_async(lambda: len(stored(db, bccd_user.id)) == 2, timeout=8)
        assert sorted(m["message_id"] for m in stored(db, bccd_user.id)) == [
            "g1@client.test",
            "g2@client.test",
        ]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert "WRONG-pw-1234" not in caplog.text
    assert "good-pw" not in caplog.text


async def test_paused_account_is_retried_with_backoff_and_recovers(
    dovecot: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    """poll_interval is 1 s: the retries come 1 s, 2 s … apart; fixing the password (here:
    creating the user the account logs in as) makes the account active again."""
    account = add_account(dovecot, "late-user", password="pw-late")
    stop = asyncio.Event()
    task = asyncio.create_task(run_poller(settings, db, sink, stop))
    try:
        await wait_until_async(lambda: _row(db, account).failures >= 1)
        first = _row(db, account)
        assert first.state == "paused" and first.next_attempt_at is not None
        dovecot.add_user("late-user", "pw-late")
        dovecot.append("late-user", make_message(BOB, USER_EMAIL, message_id="<late@client.test>"))
        await wait_until_async(lambda: _row(db, account).state == "active", timeout=10)
        row = _row(db, account)
        assert row.failures == 0 and row.state_reason == "" and row.next_attempt_at is None
        await wait_until_async(lambda: len(stored(db, bccd_user.id)) == 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_poller_picks_up_accounts_added_while_running(
    dovecot: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_poller(settings, db, sink, stop))
    try:
        await asyncio.sleep(0.2)
        user = dovecot.add_user("added-later", "pw")
        dovecot.append(user, make_message(BOB, USER_EMAIL, message_id="<later@client.test>"))
        add_account(dovecot, user)
        await wait_until_async(lambda: len(stored(db, bccd_user.id)) == 1, timeout=8)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


class _Counting:
    """An ingest sink that counts, per instance, what reached it."""

    def __init__(self, inner: IngestSink, counts: Counter[str], name: str) -> None:
        self.inner, self.counts, self.name = inner, counts, name

    async def ingest_imap(self, raw: bytes, **kw: Any) -> Any:
        self.counts[self.name] += 1
        return await self.inner.ingest_imap(raw, **kw)


def _lease(db: Database, account_id: int) -> tuple[str | None, object]:
    row = _row(db, account_id)
    return row.lease_owner, row.lease_until


@BOTH_ENGINES
@pytest.mark.spec("11")
async def test_two_instances_sync_an_account_one_at_a_time(
    dovecot: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    bccd_user: BccdUser,
    database_url: str,
) -> None:
    """Two pollers (two instances: own engines, own pipelines) on one database: the lease
    makes one of them sync the account; when it stops, the other takes over."""
    from bccd.ingest.pipeline import Pipeline
    from bccd.store.blobs import BlobStore

    leased = settings.model_copy(update={"imap": settings.imap.model_copy(update={"lease": 6})})
    user = dovecot.add_user(f"leased-{database_url.split(':')[0].split('+')[0]}", "pw")
    dovecot.append(user, make_message(BOB, USER_EMAIL, message_id="<lease1@client.test>"))
    account = add_account(dovecot, user)
    instances = {}
    ingested: Counter[str] = Counter()
    for name in ("instance-a", "instance-b"):
        other = Database(settings.database_url)
        stop = asyncio.Event()
        sink = _Counting(Pipeline(leased, other, BlobStore(settings.blob_dir)), ingested, name)
        task = asyncio.create_task(run_poller(leased, other, sink, stop, owner=name))
        instances[name] = (other, stop, task)
    try:
        await wait_until_async(lambda: len(stored(db, bccd_user.id)) == 1)
        holder, until = _lease(db, account)
        assert holder in instances and until is not None
        await asyncio.sleep(3)  # a renewal (every 2 s) later: still one holder, no second sync
        assert _lease(db, account)[0] == holder
        assert ingested == {holder: 1}  # the other instance fetched nothing

        _, stop_holder, task_holder = instances.pop(holder)
        stop_holder.set()
        await asyncio.wait_for(task_holder, 10)
        [other_name] = instances
        await wait_until_async(lambda: _lease(db, account)[0] == other_name, timeout=10)
        dovecot.append(user, make_message(BOB, USER_EMAIL, message_id="<lease2@client.test>"))
        await wait_until_async(lambda: len(stored(db, bccd_user.id)) == 2, timeout=10)
        assert ingested == {holder: 1, other_name: 1}
    finally:
        for other, stop, task in instances.values():
            stop.set()
            await asyncio.wait_for(task, 10)
            other.dispose()
    assert _lease(db, account) == (None, None)  # both stopped: released


@BOTH_ENGINES
async def test_a_renewal_in_flight_when_the_session_ends_does_not_retake_the_released_lease(
    dovecot: Dovecot,
    add_account: Callable[..., int],
    db: Database,
    database_url: str,
) -> None:
    """A renewal's thread outlives the task cancelled at the session's end; the release
    made after it must still leave the lease free (CI once found it held after a stop)."""
    user = dovecot.add_user(f"renewal-{database_url.split(':')[0].split('+')[0]}", "pw")
    account = add_account(dovecot, user)
    entered, gate, finished = threading.Event(), threading.Event(), threading.Event()
    claimed: list[bool] = []

    class SlowRenewal(_Lease):
        def _claim(self, generation: int) -> bool:
            entered.set()
            gate.wait(10)
            try:
                claimed.append(super()._claim(generation))
                return claimed[-1]
            finally:
                finished.set()

    assert await _Lease(db, account, "me", 60).claim()
    lease = SlowRenewal(db, account, "me", 60)
    renewal = asyncio.create_task(lease.claim())
    assert await asyncio.to_thread(entered.wait, 10)
    renewal.cancel()  # the session ends while the renewal's thread is at work
    release = lease.release()
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.wait_for(release, 10)
    assert await asyncio.to_thread(finished.wait, 10)
    assert claimed == [False]  # the renewal saw the release and claimed nothing
    assert _lease(db, account) == (None, None)
    assert await lease.claim()  # the next session claims as usual
    assert _lease(db, account)[0] == "me"


def _stand_in_sessions(monkeypatch: pytest.MonkeyPatch, close: Callable[[], Any]) -> list[int]:
    """Fault injection for the poller: every connect returns a stand-in session (no
    IDLE, nothing to sync) whose LOGOUT is ``await close()``; returns the connects made."""
    import bccd.imap.poller as poller

    connects: list[int] = []

    class StandIn:
        def has(self, capability: str) -> bool:
            return False

        async def close(self) -> None:
            await close()

    async def connect(db: Database, box: Any, account_id: int) -> tuple[None, StandIn]:
        connects.append(account_id)
        return None, StandIn()

    async def sync(*args: Any, **kwargs: Any) -> Any:
        return type("Result", (), {"stored": 0})()

    monkeypatch.setattr(poller, "connect_account", connect)
    monkeypatch.setattr(poller, "sync_account", sync)
    return connects


@BOTH_ENGINES
async def test_the_lease_is_released_when_shutdown_cuts_a_hung_logout_short(
    dovecot: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At shutdown the poller is cancelled once, then (after ``serve``'s grace) again: an
    account whose server hangs on LOGOUT must still give its lease up, or no instance
    syncs it until the lease runs out. The hung server is simulated (fault injection):
    the session is a stand-in whose ``close`` never returns."""
    user = dovecot.add_user(f"hung-{database_url.split(':')[0].split('+')[0]}", "pw")
    account = add_account(dovecot, user)
    closing = asyncio.Event()

    async def hung() -> None:
        closing.set()
        await asyncio.Event().wait()  # the server never answers LOGOUT

    _stand_in_sessions(monkeypatch, hung)
    stop = asyncio.Event()
    task = asyncio.create_task(run_poller(settings, db, sink, stop, owner="me"))
    await wait_until_async(lambda: _lease(db, account)[0] == "me")
    stop.set()  # the first cancel: the account's session ends and says LOGOUT …
    await asyncio.wait_for(closing.wait(), 10)
    task.cancel()  # … which hangs: shutdown's grace is over, the poller is cancelled
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert _lease(db, account) == (None, None)


@BOTH_ENGINES
async def test_a_disabled_then_enabled_account_restarts_only_after_its_old_session_ended(
    dovecot: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old session's lease release must not free the new session's lease (same
    owner): the poller starts the account again only once its old task has ended. The
    old session's LOGOUT is held (fault injection, as above) while the user is enabled."""
    from bccd import accounts
    from bccd.lifecycle import offboard

    user = dovecot.add_user(f"cycle-{database_url.split(':')[0].split('+')[0]}", "pw")
    account = add_account(dovecot, user)
    logout, closing = asyncio.Event(), asyncio.Event()

    async def held_logout() -> None:
        closing.set()
        await logout.wait()

    connects = _stand_in_sessions(monkeypatch, held_logout)

    def set_disabled(disabled: bool) -> None:
        with db.transaction() as s:
            u = accounts.get_user(s, bccd_user.email)
            (offboard.disable_user if disabled else offboard.enable_user)(s, u)

    stop = asyncio.Event()
    task = asyncio.create_task(run_poller(settings, db, sink, stop, owner="me"))
    try:
        await wait_until_async(lambda: _lease(db, account)[0] == "me")
        set_disabled(True)
        await asyncio.wait_for(closing.wait(), 30)  # the poller ended the session: LOGOUT
        set_disabled(False)
        await asyncio.sleep(2.5)  # … and sees the account wanted again: not while it ends
        assert connects == [account]
        logout.set()
        await wait_until_async(lambda: len(connects) == 2)
        await asyncio.sleep(1)  # whatever the old session released, it did so before
        assert _lease(db, account)[0] == "me"
    finally:
        logout.set()
        stop.set()
        await asyncio.wait_for(task, 10)
    assert _lease(db, account) == (None, None)
