"""Write-back on a real Dovecot: archiving moves the thread's messages to ``\\Archive``,
deleting moves them to ``\\Trash`` or expunges exactly their UIDs; the user's other
``\\Deleted`` mail is never expunged; without MOVE and UIDPLUS the job fails instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from bccd.config import Settings
from bccd.imap.poller import sync_once
from bccd.imap.sync import IngestSink
from bccd.imap.writeback import process_writeback_jobs, run_writeback
from bccd.mailboxes.writeback import WRITEBACK_KIND, enqueue_writeback
from bccd.store.db import Database
from bccd.store.models import OutboxJob
from tests.integration.imap.conftest import BOTH_ENGINES, USER_EMAIL, BccdUser
from tests.integration.imap.helpers import make_message, stored
from tests.support.dovecot import Dovecot
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.spec("7")

BOB = "Bob Client <bob@client.test>"
NO_MOVE = "imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS SPECIAL-USE\n"
NO_MOVE_NO_UIDPLUS = "imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE SPECIAL-USE\n"


@pytest.fixture(scope="module")
def dovecot_no_move() -> Iterator[Dovecot]:
    with Dovecot(extra_conf=NO_MOVE) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_bare() -> Iterator[Dovecot]:
    with Dovecot(extra_conf=NO_MOVE_NO_UIDPLUS) as server:
        yield server


def seed(server: Dovecot, user: str) -> None:
    """A two-message conversation (INBOX + Sent) and the user's unrelated mail, one of them
    already flagged \\Deleted (which only the user's own EXPUNGE may remove)."""
    server.append(user, make_message(BOB, USER_EMAIL, message_id="<t1@client.test>"))
    server.append(
        user,
        make_message(USER_EMAIL, BOB, message_id="<t2@acme.test>", in_reply_to="<t1@client.test>"),
        "Sent",
    )
    server.append(user, make_message(BOB, USER_EMAIL, message_id="<keep@client.test>"))
    server.append(
        user, make_message(BOB, USER_EMAIL, message_id="<users-deleted@client.test>"), flags=["\\Deleted"]
    )


def thread_ids(db: Database, user_id: int, *mids: str) -> set[int]:
    return {m["thread_id"] for m in stored(db, user_id) if m["message_id"] in mids}


def enqueue(db: Database, threads: set[int], action: str) -> list[int]:
    with db.transaction() as s:
        return [j.id for t in sorted(threads) for j in enqueue_writeback(s, t, action)]


def jobs(db: Database) -> list[OutboxJob]:
    with db.read() as s:
        return list(s.scalars(select(OutboxJob).where(OutboxJob.kind == WRITEBACK_KIND)))


async def synced(
    server: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    user: str,
    **kw: object,
) -> int:
    seed(server, user)
    account = add_account(server, user, **kw)
    [res] = await sync_once(settings, db, sink, account_ids=[account])
    assert res.error is None
    return account


@BOTH_ENGINES
async def test_archive_moves_thread_to_archive(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    await synced(dovecot, add_account, settings, db, sink, imap_user, on_archive="archive")
    threads = thread_ids(db, bccd_user.id, "t1@client.test", "t2@acme.test")
    assert enqueue(db, threads, "archive")

    assert await process_writeback_jobs(settings, db) >= 1

    assert all(j.state == "done" for j in jobs(db))
    assert dovecot.message_ids(imap_user, "Archive") == ["<t1@client.test>", "<t2@acme.test>"]
    assert dovecot.message_ids(imap_user, "Sent") == []
    # the user's other mail, including what they flagged \Deleted themselves, is untouched
    assert dovecot.message_ids(imap_user, "INBOX") == [
        "<keep@client.test>",
        "<users-deleted@client.test>",
    ]
    # refs that were acted upon are gone; a later sync finds the messages in Archive
    for m in stored(db, bccd_user.id):
        if m["message_id"] in ("t1@client.test", "t2@acme.test"):
            assert m["refs"] == []
    [res] = await sync_once(settings, db, sink)
    assert res.error is None and res.stored == 0
    archived = [m for m in stored(db, bccd_user.id) if m["message_id"] == "t1@client.test"]
    assert [r[0] for r in archived[0]["refs"]] == ["Archive"]


async def test_on_archive_none_queues_nothing(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    await synced(dovecot, add_account, settings, db, sink, imap_user)
    threads = thread_ids(db, bccd_user.id, "t1@client.test")
    assert enqueue(db, threads, "archive") == []
    assert enqueue(db, threads, "delete") == []


async def test_delete_moves_to_trash_then_expunges_exact_uids(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    dovecot.append(
        imap_user,
        make_message(BOB, USER_EMAIL, message_id="<old-trash@x.test>"),
        "Trash",
        flags=["\\Deleted"],
    )
    await synced(
        dovecot,
        add_account,
        settings,
        db,
        sink,
        imap_user,
        on_archive="delete",
        folders=["INBOX", "\\Sent", "\\Trash"],
    )
    threads = thread_ids(db, bccd_user.id, "t1@client.test", "t2@acme.test")
    # on_archive = delete: archiving the thread deletes it on the server (→ Trash)
    enqueue(db, threads, "archive")
    await process_writeback_jobs(settings, db)
    assert dovecot.message_ids(imap_user, "Trash") == [
        "<old-trash@x.test>",
        "<t1@client.test>",
        "<t2@acme.test>",
    ]
    assert "<t1@client.test>" not in dovecot.message_ids(imap_user, "INBOX")

    # sync finds them in Trash; deleting the thread now expunges exactly those UIDs
    await sync_once(settings, db, sink)
    enqueue(db, thread_ids(db, bccd_user.id, "t1@client.test", "t2@acme.test"), "delete")
    await process_writeback_jobs(settings, db)
    assert all(j.state == "done" for j in jobs(db))
    assert dovecot.message_ids(imap_user, "Trash") == ["<old-trash@x.test>"]
    assert "<users-deleted@client.test>" in dovecot.message_ids(imap_user, "INBOX")


async def test_archive_without_move_uses_uidplus(
    dovecot_no_move: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    user = dovecot_no_move.add_user("nomove", "pw")
    await synced(dovecot_no_move, add_account, settings, db, sink, user, on_archive="archive")
    enqueue(db, thread_ids(db, bccd_user.id, "t1@client.test", "t2@acme.test"), "archive")
    await process_writeback_jobs(settings, db)
    assert all(j.state == "done" for j in jobs(db))
    assert dovecot_no_move.message_ids(user, "Archive") == ["<t1@client.test>", "<t2@acme.test>"]
    assert dovecot_no_move.message_ids(user, "INBOX") == [
        "<keep@client.test>",
        "<users-deleted@client.test>",
    ]


async def test_without_move_or_uidplus_the_job_fails_and_nothing_is_expunged(
    dovecot_bare: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    user = dovecot_bare.add_user("bare", "pw")
    await synced(dovecot_bare, add_account, settings, db, sink, user, on_archive="archive")
    enqueue(db, thread_ids(db, bccd_user.id, "t1@client.test"), "archive")
    await process_writeback_jobs(settings, db)
    [job] = jobs(db)
    assert job.state == "failed" and "neither MOVE nor UIDPLUS" in job.last_error
    assert dovecot_bare.message_ids(user, "INBOX") == [
        "<keep@client.test>",
        "<t1@client.test>",
        "<users-deleted@client.test>",
    ]


@BOTH_ENGINES
async def test_failed_attempt_is_retried_later(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    account = await synced(dovecot, add_account, settings, db, sink, imap_user, on_archive="archive")
    enqueue(db, thread_ids(db, bccd_user.id, "t1@client.test"), "archive")
    from tests.support.ports import free_port

    with db.transaction() as s:
        from bccd.store.models import ImapAccount

        row = s.get(ImapAccount, account)
        assert row is not None
        good_port, row.port = row.port, free_port()  # the server is "down"
    await process_writeback_jobs(settings, db)
    [job] = jobs(db)
    assert job.state == "pending" and job.attempts == 1 and "refused" in job.last_error
    # not due yet
    assert await process_writeback_jobs(settings, db) == 0

    with db.transaction() as s:
        row = s.get(ImapAccount, account)
        assert row is not None
        row.port = good_port
        j = s.get(OutboxJob, job.id)
        assert j is not None
        from bccd.store.models import utcnow

        j.next_attempt_at = utcnow()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_writeback(settings, db, stop, interval=0.1))
    try:
        await wait_until_async(lambda: jobs(db)[0].state == "done")
    finally:
        stop.set()
        await asyncio.wait_for(worker, 5)
    assert "<t1@client.test>" in dovecot.message_ids(imap_user, "Archive")
