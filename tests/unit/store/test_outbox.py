"""The durable outbox (``bccd.store.outbox``): exclusive claims with leases, fenced outcomes,
back-off, giving up, purging (the worker that runs it: ``tests/unit/notify/test_jobs.py``)."""

from __future__ import annotations

import datetime as dt

import pytest

from bccd.store import outbox
from bccd.store.db import Database
from bccd.store.models import OutboxJob
from tests.unit.conftest import new_db

T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def _enqueue(db: Database, kind: str = "mail", n: int = 1, at: dt.datetime = T0) -> list[int]:
    with db.transaction() as s:
        return [outbox.enqueue(s, kind, {"n": i}, not_before=at).id for i in range(n)]


def _row(db: Database, job_id: int) -> OutboxJob:
    with db.read() as s:
        row = s.get(OutboxJob, job_id)
        assert row is not None
        return row


def test_a_claimed_job_is_leased_to_one_claimant(db: Database) -> None:
    [jid] = _enqueue(db)
    [job] = outbox.claim(db, ["mail"], now=T0)
    assert (job.id, job.attempts, job.payload) == (jid, 1, {"n": 0})
    assert outbox.claim(db, ["mail"], now=T0 + dt.timedelta(minutes=4)) == []
    # the claimant died: after the lease the job is claimed again, with a new fence
    [again] = outbox.claim(db, ["mail"], now=T0 + outbox.LEASE + dt.timedelta(seconds=1))
    assert again.attempts == 2
    assert not outbox.complete(db, job)  # the first claimant's late outcome is ignored
    assert outbox.complete(db, again)
    assert _row(db, jid).state == "done"


def test_only_the_handled_kinds_are_claimed(db: Database) -> None:
    _enqueue(db, "imap_writeback")
    [mail] = _enqueue(db, "mail")
    assert [j.id for j in outbox.claim(db, ["mail", "webhook"], now=T0)] == [mail]
    assert outbox.claim(db, [], now=T0) == []


def test_jobs_not_yet_due_are_left_alone(db: Database) -> None:
    _enqueue(db, at=T0 + dt.timedelta(minutes=1))
    assert outbox.claim(db, ["mail"], now=T0) == []
    assert len(outbox.claim(db, ["mail"], now=T0 + dt.timedelta(minutes=1))) == 1


def test_failures_back_off_exponentially_then_give_up(db: Database) -> None:
    [jid] = _enqueue(db)
    now = T0
    delays = []
    for _ in range(4):
        [job] = outbox.claim(db, ["mail"], now=now)
        assert outbox.fail(db, job, "relay down", now=now) == "pending"
        row = _row(db, jid)
        delays.append((row.next_attempt_at - now).total_seconds())
        now = row.next_attempt_at
    assert [round(d / b, 1) >= 0.8 for d, b in zip(delays, (2, 4, 8, 16))] == [True] * 4
    assert all(d <= b * 1.2 for d, b in zip(delays, (2, 4, 8, 16)))
    assert _row(db, jid).last_error == "relay down"
    too_old = _row(db, jid).created_at + outbox.MAX_AGE
    [job] = outbox.claim(db, ["mail"], now=too_old)
    assert outbox.fail(db, job, "still down", now=too_old) == "failed"
    assert _row(db, jid).state == "failed"


def test_backoff_is_capped() -> None:
    assert outbox.backoff(50) <= outbox.RETRY_MAX * 1.2


def test_purge_removes_old_finished_jobs_only(db: Database) -> None:
    _, b = _enqueue(db, n=2)
    [job, _] = outbox.claim(db, ["mail"], now=T0)
    outbox.complete(db, job, now=T0)
    assert outbox.purge_finished(db, dt.timedelta(days=7), now=T0 + dt.timedelta(days=8)) == 1
    with db.read() as s:
        assert [r.id for r in s.query(OutboxJob)] == [b]


@pytest.mark.pg
def test_claims_on_postgresql_skip_locked_rows(pg_url: str) -> None:
    db = new_db(pg_url)
    try:
        _enqueue(db, n=6)
        with db.transaction() as s:  # another instance holds a lock on the first two
            locked = s.query(OutboxJob).order_by(OutboxJob.id).limit(2).with_for_update().all()
            got = outbox.claim(db, ["mail"], now=T0, limit=10)
            assert sorted(j.id for j in got) == sorted(r.id for r in
                                                       s.query(OutboxJob).order_by(OutboxJob.id)
                                                       .offset(2).all())
            assert {r.id for r in locked}.isdisjoint(j.id for j in got)
        rest = outbox.claim(db, ["mail"], now=T0, limit=10)
        assert len(rest) == 2 and all(j.attempts == 1 for j in rest)
        assert outbox.claim(db, ["mail"], now=T0, limit=10) == []
    finally:
        db.dispose()
