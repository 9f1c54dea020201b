"""The group writer (``Database.write``): requests pending together commit in one
transaction; one that raises loses only its own work — the others commit once, and its
error (after one retry alone) is its outcome."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bccd.store.db import TRANSIENT_TRIES, Database
from bccd.store.migrate import upgrade
from bccd.store.models import Company


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """One writer lane (PostgreSQL has several): the group is what that lane takes."""
    upgrade(db_url)
    database = Database(db_url, write_lanes=1)
    yield database
    database.dispose()


def _company(s: Session, slug: str, gate: threading.Event | None = None,
             entered: threading.Event | None = None) -> str:
    if entered is not None:
        entered.set()
    if gate is not None:
        gate.wait(10)  # holds the writer: what arrives meanwhile forms one group
    s.add(Company(slug=slug, name=slug))
    s.flush()
    return slug


def _broken(s: Session, slug: str) -> str:
    s.add(Company(slug=slug, name=slug))
    s.flush()
    raise ValueError(f"{slug} is broken")


def _slugs(db: Database) -> list[str]:
    with db.read() as s:
        return sorted(s.scalars(select(Company.slug)))


async def _group(db: Database, *requests: tuple) -> list[object]:
    """The first request holds the writer until every other one is queued (``submit``
    queues before it returns): no sleeps, so a stalled machine cannot change the groups."""
    gate, entered = threading.Event(), threading.Event()
    first = db.submit(_company, "gate", gate, entered)
    assert await asyncio.to_thread(entered.wait, 10)
    rest = [db.submit(fn, slug) for fn, slug in requests]
    gate.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


async def test_requests_pending_together_commit_in_one_group(db: Database) -> None:
    out = await _group(db, *[(_company, f"c{i}") for i in range(5)])
    assert out == ["gate", "c0", "c1", "c2", "c3", "c4"]
    writer = db._group_writer()
    assert (writer.groups, writer.requests, writer.regroups, writer.retries) == (2, 6, 0, 0)
    assert _slugs(db) == ["c0", "c1", "c2", "c3", "c4", "gate"]


async def test_a_failing_request_loses_only_its_own_work(db: Database) -> None:
    out = await _group(db, (_company, "a"), (_broken, "bad"), (_company, "b"))
    assert out[:2] == ["gate", "a"] and out[3] == "b"
    assert isinstance(out[2], ValueError) and str(out[2]) == "bad is broken"
    writer = db._group_writer()
    # the group ran again with a savepoint each, then the broken one alone: still broken
    assert (writer.regroups, writer.retries) == (1, 1)
    assert _slugs(db) == ["a", "b", "gate"]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Company)) == 3  # each once


class _Deadlocked:
    """A request that meets a deadlock the first ``times`` times it runs."""

    def __init__(self, times: int) -> None:
        self.times, self.calls = times, 0

    def __call__(self, s: Session, slug: str) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise OperationalError("INSERT INTO companies …", {},
                                   psycopg.errors.DeadlockDetected("deadlock detected"))
        return _company(s, slug)


async def test_a_request_that_meets_deadlocks_alone_is_tried_again(db: Database) -> None:
    # in the group, in the group with savepoints, alone: three deadlocks; the fourth run
    # commits
    flaky = _Deadlocked(3)
    out = await _group(db, (flaky, "flaky"), (_company, "c"))
    assert out == ["gate", "flaky", "c"] and flaky.calls == 4
    assert db._group_writer().retries == 2
    assert _slugs(db) == ["c", "flaky", "gate"]


async def test_deadlocks_that_do_not_stop_end_in_the_error(db: Database) -> None:
    flaky = _Deadlocked(100)
    out = await _group(db, (flaky, "never"))
    assert isinstance(out[1], OperationalError) and "deadlock" in str(out[1])
    assert flaky.calls == 1 + TRANSIENT_TRIES  # its group (it alone), then every try
    assert _slugs(db) == ["gate"]
