"""``bccd.store.leases`` on SQLite and PostgreSQL: of two instances one runs a pass; the
pass runs again only after its interval; a dead holder's lease runs out and another
instance takes over; a pass cut short is not recorded as done; a renewal fails once
another instance has taken the pass over."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from bccd.store import leases
from bccd.store.db import Database
from bccd.store.models import utcnow

EVERY, LEASE = 3600.0, 120.0


def _claim(db: Database, owner: str, now: dt.datetime) -> bool:
    return leases.claim(db, "retention", owner, every=EVERY, lease=LEASE, now=now)


def test_one_instance_runs_a_pass_and_it_runs_again_only_after_its_interval(
        function_db: Database) -> None:
    db, now = function_db, utcnow()
    with ThreadPoolExecutor(4) as pool:
        won = list(pool.map(lambda o: _claim(db, o, now), ["a", "b", "c", "d"]))
    assert sorted(won) == [False, False, False, True]
    winner = "abcd"[won.index(True)]
    leases.finish(db, "retention", winner)
    assert not _claim(db, "b", now + dt.timedelta(minutes=10))          # done recently
    assert _claim(db, "b", now + dt.timedelta(seconds=EVERY))           # due again


def test_a_dead_holders_lease_runs_out_and_a_pass_cut_short_is_not_done(
        function_db: Database) -> None:
    db, now = function_db, utcnow()
    assert _claim(db, "a", now)                                          # a dies mid-pass
    assert not _claim(db, "b", now + dt.timedelta(seconds=LEASE - 1))
    assert _claim(db, "b", now + dt.timedelta(seconds=LEASE + 1))        # taken over
    assert not leases.renew(db, "retention", "a", lease=LEASE)          # a learns it lost
    leases.finish(db, "retention", "b", completed=False)                # b stopped mid-pass
    assert _claim(db, "c", now + dt.timedelta(seconds=LEASE + 2))       # so it is still due


async def test_two_instances_clean_the_outbox_once_per_interval_not_once_each(
        function_db: Database, monkeypatch) -> None:
    import asyncio

    from bccd.notify import worker

    runs: list[float] = []

    async def cleanup(db: Database) -> int:
        runs.append(asyncio.get_running_loop().time())
        return 0

    monkeypatch.setattr(worker, "cleanup_once", cleanup)
    stop = asyncio.Event()
    interval, watch = 0.5, 3.0
    tasks = [asyncio.create_task(worker.outbox_cleanup_worker(function_db, stop, interval=interval,
                                                              first=0.1 + 0.05 * i))
             for i in range(2)]
    await asyncio.sleep(watch)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    # each alone would clean every `interval`: together they do not double it
    assert 2 <= len(runs) <= watch / (interval * 0.9) + 1, runs
