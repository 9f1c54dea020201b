"""Running the outbox (``bccd.notify.jobs``): dispatch by kind with failures recorded, and
the worker loop that performs due jobs and stops promptly."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from bccd.notify import jobs
from bccd.store import outbox
from bccd.store.db import Database
from bccd.store.models import OutboxJob

T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def _enqueue(db: Database, kind: str = "mail", n: int = 1, at: dt.datetime = T0) -> list[int]:
    with db.transaction() as s:
        return [outbox.enqueue(s, kind, {"n": i}, not_before=at).id for i in range(n)]


def _row(db: Database, job_id: int) -> OutboxJob:
    with db.read() as s:
        row = s.get(OutboxJob, job_id)
        assert row is not None
        return row


async def test_dispatch_is_by_kind_and_failures_are_recorded(db: Database) -> None:
    ids = _enqueue(db, "mail") + _enqueue(db, "webhook") + _enqueue(db, "broken") + _enqueue(db, "odd")
    seen: list[tuple[str, dict[str, Any]]] = []

    async def mail(payload: dict[str, Any]) -> None:
        seen.append(("mail", payload))

    async def webhook(payload: dict[str, Any]) -> None:
        raise jobs.PermanentFailure("410 from the receiver")

    async def broken(payload: dict[str, Any]) -> None:
        raise ConnectionRefusedError("no route")

    handlers = {"mail": mail, "webhook": webhook, "broken": broken}
    assert await jobs.process_due(db, handlers) == 3
    assert seen == [("mail", {"n": 0})]
    rows = [_row(db, i) for i in ids]
    assert [r.state for r in rows] == ["done", "failed", "pending", "pending"]
    assert rows[1].last_error == "410 from the receiver"
    assert rows[2].last_error.startswith("ConnectionRefusedError") and rows[2].attempts == 1
    assert rows[3].attempts == 0  # no handler for "odd" here: not claimed, not touched


async def test_the_worker_loop_performs_jobs_and_stops_promptly(db: Database) -> None:
    done = asyncio.Event()

    async def mail(payload: dict[str, Any]) -> None:
        done.set()

    stop = asyncio.Event()
    task = asyncio.create_task(jobs.run(db, {"mail": mail}, stop, poll=0.05))
    await asyncio.sleep(0.1)
    _enqueue(db, at=dt.datetime.now(dt.UTC))
    await asyncio.wait_for(done.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
